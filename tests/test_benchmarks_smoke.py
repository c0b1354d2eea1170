"""Smoke test of the benchmark runner's pure parts: the decode core and the tables.

No emulator, no timing assertions: the benchmarks themselves are run with
``python -m benchmarks.run``.
"""

from __future__ import annotations

import json

from benchmarks.config import settings_for
from benchmarks.decode import JSON_LOADS, MODELS, measure_decoders
from benchmarks.report import Table, Target, render_markdown, render_text, targets_table
from benchmarks.rows import canonical_dict, canonical_struct, summarize
from kaiko_liq.models import decode_page


def _row(hour: int) -> dict[str, object]:
    # The shape of the endpoint doc's response example (two exchanges; a 0 amount).
    return {
        "interval_time": f"2025-02-27T{hour:02d}:00:00Z",
        "interval_timestamp": 1740614400000000000 + hour * 3_600_000_000_000,
        "total_trades": 40,
        "total_amount": 474520.3599480028,
        "long_trades": 2,
        "long_amount": 11062.85615080547,
        "short_trades": 38,
        "short_amount": 463457.50379719737,
        "exchanges": [
            {
                "exchange": "bbit",
                "total_trades": 17,
                "total_amount": 281481.78156436956,
                "long_trades": 0,
                "long_amount": 0,
                "short_trades": 17,
                "short_amount": 281481.78156436956,
            },
            {
                "exchange": "okex",
                "total_trades": 23,
                "total_amount": 193038.57838363323,
                "long_trades": 2,
                "long_amount": 11062.85615080547,
                "short_trades": 21,
                "short_amount": 181975.72223282777,
            },
        ],
    }


def _body(n: int) -> bytes:
    data = [_row(h) for h in reversed(range(n))]
    envelope = {"query": {"page_size": "2", "token": "eth"}, "data": data}
    return json.dumps(envelope).encode()


def test_measure_decoders_counts_every_row() -> None:
    bodies = [_body(24), _body(3)]
    results = measure_decoders(bodies, repeat=2)
    by_name = {r.decoder: r for r in results}
    assert {MODELS, JSON_LOADS} <= set(by_name)
    for r in results:
        assert r.rows == 27
        assert r.bytes == sum(len(b) for b in bodies)
        assert r.seconds > 0
        assert r.rows_per_s > 0
    kept = measure_decoders(bodies, repeat=1, keep=True)
    assert [r.rows for r in kept] == [27] * len(kept)


def test_checksums_agree_between_dicts_and_structs() -> None:
    body = _body(5)
    structs = decode_page(body).data or []
    dicts = json.loads(body)["data"]
    a = summarize({"eth": [canonical_struct(r) for r in structs]})
    b = summarize({"eth": [canonical_dict(r) for r in reversed(dicts)]})
    assert a.same_data(b)
    assert a.rows == 5
    assert a.duplicates == 0
    changed = dict(dicts[0], total_trades=41)
    c = summarize({"eth": [canonical_dict(r) for r in [changed, *dicts[1:]]]})
    assert not a.same_data(c)


def test_tables_render_as_text_and_markdown() -> None:
    table = Table("Backfill", ("client", "wall", "requests"))
    table.add("kaiko-liq", "1.02 s", "90")
    table.add("sequential | loop", "88.1 s*", "876*")
    table.notes.append("* scaled")
    verdicts = targets_table(
        [
            Target("backfill", "wall ≤ 1.3× bound", "1.13×", True),
            Target("decode", "≥ 4×", "3.1×", False),
            Target("memory", "growth < 20%", "failed", None),
        ]
    )
    text = render_text([table, verdicts], header="machine")
    assert text.startswith("machine")
    assert "== Backfill ==" in text
    assert "pass" in text and "MISS" in text and "n/a" in text
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("client"))
    row = next(line for line in lines if line.startswith("kaiko-liq"))
    assert len(row) == len(header) or row.endswith("90")

    md = render_markdown([table, verdicts])
    assert "### Backfill" in md
    assert "| client | wall | requests |" in md
    assert "|---|---:|---:|" in md
    assert "sequential \\| loop" in md
    assert "| 88.1 s\\* |" in md
    assert "- \\* scaled" in md


def test_settings_quick_is_smaller() -> None:
    quick, full = settings_for(quick=True), settings_for(quick=False)
    assert len(quick.assets) < len(full.assets)
    assert quick.end < full.end
    assert json.dumps(full.to_json())
    assert settings_for(quick=False, sequential_assets=0).sequential_assets == len(full.assets)
