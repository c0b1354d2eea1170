"""Benchmarks for kaiko-liq: ``python -m benchmarks.run [--quick]``.

Scenarios (one module each): :mod:`benchmarks.backfill` (kaiko-liq against two naive
clients), :mod:`benchmarks.decode` (msgspec models against ``json.loads``),
:mod:`benchmarks.memory` (peak RSS while streaming) and :mod:`benchmarks.faults`
(backfill under injected faults). The emulator always runs in its own process
(:mod:`benchmarks.emulator_proc`) so that its CPU does not slow the client's event loop.
"""
