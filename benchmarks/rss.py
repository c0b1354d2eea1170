"""Peak resident memory of the current process, for the workers that measure it."""

from __future__ import annotations

import resource
import sys

__all__ = ["peak_rss_bytes"]


def peak_rss_bytes() -> int:
    """This process's peak RSS.

    On Linux ``ru_maxrss`` is no good here: the kernel carries the high-water mark across
    ``execve``, so a fresh interpreter started by a 150 MB parent reports >= 150 MB (the
    parent's pages at fork). ``VmHWM`` in ``/proc/self/status`` is the peak of this
    process's own address space, reset by ``execve``.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak if sys.platform == "darwin" else peak * 1024
