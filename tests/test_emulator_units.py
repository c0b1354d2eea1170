"""The emulator's pure parts: tokens, rate limiting, paging, parameters, faults, gzip."""

from __future__ import annotations

import base64
import gzip
import itertools
import os
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from kaiko_liq.emulator import EmulatorConfig, EmulatorConfigError, EmulatorStats, rows_for
from kaiko_liq.emulator.compression import GzipAssembler, crc32_combine, gzip_bytes
from kaiko_liq.emulator.config import parse_rate
from kaiko_liq.emulator.errors import Rejection
from kaiko_liq.emulator.faults import FAULT_MIX, Fault, FaultInjector, Latency
from kaiko_liq.emulator.grid import ParamError, parse_grid_interval, parse_iso_time
from kaiko_liq.emulator.paging import PageSlice, slice_page
from kaiko_liq.emulator.params import Query, parse_query
from kaiko_liq.emulator.ratelimit import KeyedRateLimiter, TokenBucket
from kaiko_liq.emulator.tokens import TokenCodec
from tests.conftest import FIXED_NOW

H = 3600
NOW = int(FIXED_NOW.timestamp())


def query(**params: str) -> Query:
    return parse_query("eth", params, now=NOW)


# --- continuation tokens --------------------------------------------------------------------


def test_a_token_round_trips_and_is_url_safe() -> None:
    codec = TokenCodec(seed=0, query=Query)
    q = query(start_time="2025-03-01T00:30:00+01:00", page_size="7")
    token = codec.encode(q, 1_740_787_200)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert codec.decode(token) == (q, 1_740_787_200)
    assert TokenCodec(seed=0, query=Query).encode(q, 1_740_787_200) == token  # reproducible


def test_every_single_byte_edit_is_refused() -> None:
    codec = TokenCodec(seed=0, query=Query)
    token = codec.encode(query(), 1_740_787_200)
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    for i in range(len(raw)):
        edited = bytearray(raw)
        edited[i] ^= 0x01
        forged = base64.urlsafe_b64encode(bytes(edited)).rstrip(b"=").decode()
        with pytest.raises(Rejection) as caught:
            codec.decode(forged)
        assert caught.value.status == 400 and "continuation_token" in caught.value.message


def test_another_seed_key_refuses_the_token() -> None:
    token = TokenCodec(seed=1, query=Query).encode(query(), 0)
    with pytest.raises(Rejection):
        TokenCodec(seed=2, query=Query).decode(token)


# --- rate limiting, on a fake clock ---------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_allows_a_bit_over_one_second_of_burst_then_the_rate() -> None:
    clock = FakeClock()
    limiter = KeyedRateLimiter(10.0, clock=clock)
    assert [limiter.acquire("k") for _ in range(11)] == [0.0] * 11  # 1.1 s of the rate
    assert limiter.acquire("k") == pytest.approx(0.1)
    clock.now += 0.05
    assert limiter.acquire("k") == pytest.approx(0.05)  # a refusal takes nothing
    clock.now += 0.05
    assert limiter.acquire("k") == 0.0
    assert limiter.acquire("k") > 0
    clock.now += 10  # long idle: refills to the capacity, not beyond
    assert [limiter.acquire("k") for _ in range(12)][-2:] == [0.0, pytest.approx(0.1)]


@pytest.mark.parametrize(
    ("text", "per_second"),
    [
        ("6000/min", 100.0),
        ("6000 / minute", 100.0),
        ("1000/min", 1000 / 60),
        ("100/s", 100.0),
        ("2.5/sec", 2.5),
        ("100", 100.0),
        (100, 100.0),
        (0.5, 0.5),
        (None, None),
    ],
)
def test_rate_limits_read_as_kaiko_states_them(
    text: str | float | None, per_second: float | None
) -> None:
    assert parse_rate(text) == pytest.approx(per_second)
    assert EmulatorConfig(rate_limit=text).requests_per_second == pytest.approx(per_second)


@pytest.mark.parametrize("text", ["0/min", "-5/s", "fast", "100/h", "inf", "", "1e999"])
def test_a_bad_rate_limit_is_refused(text: str) -> None:
    with pytest.raises(EmulatorConfigError, match="rate_limit"):
        EmulatorConfig(rate_limit=text)


@pytest.mark.parametrize("burst", [1, 25, 100])
def test_a_client_at_100_per_second_is_never_refused_by_6000_per_minute(burst: int) -> None:
    """aiolimiter-style pacing at the key's rate: ``burst`` requests at once, then the
    rate. Over two simulated minutes none is refused, and an eager client gets no more
    than the minute's budget plus the burst."""
    clock = FakeClock()
    limiter = KeyedRateLimiter(parse_rate("6000/min") or 0.0, clock=clock)
    start = clock.now
    for i in range(12_000):
        clock.now = start + (i // burst) * burst / 100.0
        assert limiter.acquire("k") == 0.0, i
    eager = KeyedRateLimiter(100.0, clock=clock)
    clock.now = start
    granted = 0
    while clock.now < start + 60.0:
        granted += eager.acquire("k") == 0.0
        clock.now += 0.001
    assert 6000 <= granted <= 6000 + 110


def test_buckets_are_per_key() -> None:
    clock = FakeClock()
    limiter = KeyedRateLimiter(1.0, clock=clock)
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") == pytest.approx(0.9)  # 1.1 tokens of burst: 0.1 left
    assert limiter.acquire("b") == 0.0


def test_a_slow_rate_still_has_a_burst_of_one() -> None:
    clock = FakeClock()
    bucket = TokenBucket(0.25, 1.0, clock)
    assert bucket.acquire() == 0.0
    assert bucket.acquire() == pytest.approx(4.0)
    clock.now += 4.0
    assert bucket.acquire() == 0.0


# --- parameters -----------------------------------------------------------------------------


def test_defaults_and_the_outward_snap() -> None:
    q = query()
    assert (q.interval, q.seconds, q.sort, q.page_size) == ("1h", H, "desc", 100)
    assert (q.query_start_time, q.query_end_time) == (
        "2025-01-08T00:00:00Z",
        "2026-11-01T00:00:00Z",
    )
    q = query(start_time="2025-01-31T09:00:01Z", end_time="2025-02-27T23:59:59Z", interval="4h")
    assert q.query_start_time == "2025-01-31T09:00:01Z"  # verbatim
    assert q.data_start % (4 * H) == 0 and q.data_end % (4 * H) == 0
    assert q.first_position == q.data_end


# --- paging ---------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 2, 5, 24, 1000])
@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("empty_last_page", [False, True])
def test_pages_tile_the_window_and_hold_every_row_once(
    limit: int, descending: bool, empty_last_page: bool
) -> None:
    q = query(start_time="2025-03-01T00:00:00Z", end_time="2025-03-03T00:00:00Z")
    position: int | None = q.data_end if descending else q.data_start
    served, windows = [], []
    while position is not None:
        page = slice_page(
            "ltc",
            H,
            data_start=q.data_start,
            data_end=q.data_end,
            position=position,
            descending=descending,
            limit=limit,
            now=NOW,
            empty_last_page=empty_last_page,
        )
        assert len(page.rows) <= limit
        assert page.next_position is None or len(page.rows) == limit
        served += page.rows
        windows.append((page.start, page.end))
        position = page.next_position
    want = rows_for("ltc", "2025-03-01T00:00:00Z", "2025-03-03T00:00:00Z", now=FIXED_NOW)
    assert served == (want[::-1] if descending else want)
    spans = sorted(windows)
    assert spans[0][0] == q.data_start and spans[-1][1] == q.data_end
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    full_last = len(want) % limit == 0 and len(want) > 0
    assert len(windows) == -(-len(want) // limit) + (1 if empty_last_page and full_last else 0)


# --- faults and latency ---------------------------------------------------------------------


def test_faults_follow_the_rate_and_the_mix() -> None:
    injector = FaultInjector(0.3, seed=0)
    draws = Counter(injector.draw() for _ in range(20_000))
    assert draws[None] / 20_000 == pytest.approx(0.7, abs=0.02)
    for kind, weight in FAULT_MIX:
        assert draws[kind] / 20_000 == pytest.approx(0.3 * weight, abs=0.015)
    assert Fault.HTTP_503.status == 503 and Fault.DROP.status is None


def test_faults_and_jitter_are_seeded() -> None:
    seq = FaultInjector(0.5, seed=4)
    again = FaultInjector(0.5, seed=4)
    assert [seq.draw() for _ in range(50)] == [again.draw() for _ in range(50)]
    assert FaultInjector(0.0, seed=4).draw() is None
    jitter = Latency(0.1, 0.05, seed=1)
    delays = [jitter.draw() for _ in range(100)]
    assert all(0.1 <= d <= 0.15 for d in delays) and len(set(delays)) > 50
    replay = Latency(0.1, 0.05, seed=1)
    assert delays == [replay.draw() for _ in range(100)]
    assert Latency(0.2, 0.0, seed=1).draw() == 0.2


# --- gzip assembly --------------------------------------------------------------------------


@pytest.mark.parametrize(("la", "lb"), [(0, 0), (1, 0), (0, 7), (100, 3), (5000, 300_000)])
def test_crc32_combine_agrees_with_zlib(la: int, lb: int) -> None:
    a, b = os.urandom(la), os.urandom(lb)
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), lb) == zlib.crc32(a + b)


def test_assembled_gzip_is_one_ordinary_member() -> None:
    assembler = GzipAssembler()
    middle = b"[" + b'{"x":1.25},' * 50_000 + b"{}]"
    calls = []

    def make() -> bytes:
        calls.append(1)
        return middle

    for head, tail in [(b'{"a":1,"data":', b"}"), (b'{"a":22,"data":', b',"n":"t"}')]:
        body = assembler.assemble(head, "key", make, tail)
        one = zlib.decompressobj(16 + zlib.MAX_WBITS)
        assert one.decompress(body) == head + middle + tail
        assert one.eof and not one.unused_data
        assert gzip.decompress(body) == head + middle + tail
    assert len(calls) == 1  # the middle was compressed once
    assert gzip.decompress(gzip_bytes(b"small")) == b"small"


def test_the_gzip_cache_is_bounded() -> None:
    assembler = GzipAssembler(max_bytes=10_000)
    for i in range(50):
        assembler.assemble(b"", i, lambda: os.urandom(3000), b"")
    assert len(assembler._segments) <= 4


# --- configuration and stats ----------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"latency": -1},
        {"jitter": float("nan")},
        {"rate_limit": 0},
        {"fault_rate": 1.5},
        {"page_cap": 0},
        {"api_key": ""},
        {"paging": "pages"},
        {"now": datetime(2026, 1, 1)},
        {"now": "2026-01-01"},
        {"settle_seconds": -1},
        {"settle_seconds": 1.5},
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(EmulatorConfigError, match=next(iter(kwargs))) as caught:
        EmulatorConfig(**kwargs)  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError)


def test_the_config_repr_hides_the_key() -> None:
    assert "s3cret" not in repr(EmulatorConfig(api_key="s3cret"))


def test_stats_reset_keeps_requests_in_flight() -> None:
    stats = EmulatorStats()
    stats.started()
    stats.started()
    stats.finished(200)
    stats.reset()
    assert (stats.total_requests, stats.in_flight, stats.peak_concurrency) == (0, 1, 1)
    stats.finished(503)
    assert stats.by_status == Counter({503: 1}) and stats.in_flight == 0


# --- the emulator's own reading of the doc: intervals and times -------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("1h", H), ("4h", 4 * H), ("24h", 24 * H), ("1d", 24 * H), ("7h", 7 * H)]
)
def test_intervals_from_1h_to_1d(text: str, seconds: int) -> None:
    grid = parse_grid_interval(text)
    assert (grid.text, grid.seconds) == (text, seconds)
    assert grid.floor(NOW + 1) == NOW - NOW % seconds and grid.ceil(NOW) % seconds == 0


@pytest.mark.parametrize("text", ["0h", "25h", "2d", "1w", "h", "1.5h", " 1h", "1H", "60m"])
def test_other_intervals_are_refused_naming_the_rule(text: str) -> None:
    with pytest.raises(ParamError, match="interval .* 1h to 1d"):
        parse_grid_interval(text)


def test_iso_times_without_an_offset_are_utc_and_dates_are_midnight() -> None:
    want = datetime(2025, 1, 31, 9, tzinfo=UTC)
    for text in ("2025-01-31T09:00:00Z", "2025-01-31T09:00:00", "2025-01-31T10:00:00+01:00"):
        assert parse_iso_time(text, "start_time") == want
    assert parse_iso_time("2025-01-31T09:00:00.000Z", "t") == want
    assert parse_iso_time(datetime(2025, 1, 31).date(), "t") == want - timedelta(hours=9)
    for bad in ("yesterday", "1969-12-31T23:00:00Z", "2100-01-01T00:00:00Z"):
        with pytest.raises(ParamError, match="start_time"):
            parse_iso_time(bad, "start_time")
    with pytest.raises(ParamError, match="naive"):
        parse_iso_time(datetime(2025, 1, 31), "t")


def test_without_an_end_the_window_ends_now() -> None:
    q = parse_query("eth", {}, now=NOW + 1800)  # half an hour into a bucket
    assert q.query_end_time == "2026-11-01T00:30:00Z"
    assert q.data_end == NOW + H  # snapped outward: the open bucket is in


# --- paging by time -----------------------------------------------------------------------


def time_pages(asset: str, q: Query, limit: int, **kwargs: object) -> list[PageSlice]:
    position: int | None = q.first_position
    pages: list[PageSlice] = []
    while position is not None:
        page = slice_page(
            asset,
            q.seconds,
            data_start=q.data_start,
            data_end=q.data_end,
            position=position,
            descending=q.descending,
            limit=limit,
            now=NOW,
            paging="time",
            **kwargs,  # type: ignore[arg-type]
        )
        pages.append(page)
        position = page.next_position
        assert len(pages) < 10_000
    return pages


@pytest.mark.parametrize("sort", ["asc", "desc"])
@pytest.mark.parametrize(("limit", "interval"), [(1, "1h"), (7, "1h"), (24, "1h"), (5, "5h")])
@pytest.mark.parametrize("empty_last_page", [False, True])
def test_time_pages_cover_limit_buckets_each_and_tile_the_window(
    sort: str, limit: int, interval: str, empty_last_page: bool
) -> None:
    start, end = "2025-03-01T05:00:00Z", "2025-03-04T17:00:00Z"
    q = query(start_time=start, end_time=end, sort=sort, interval=interval)
    pages = time_pages("ltc", q, limit, empty_last_page=empty_last_page)
    spans = [(p.start, p.end) for p in pages]
    if sort == "desc":
        spans.reverse()
    assert spans[0][0] == q.data_start and spans[-1][1] == q.data_end
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    width = limit * q.seconds
    assert all(p.end - p.start == width for p in pages[:-1])
    assert 0 <= pages[-1].end - pages[-1].start <= width
    for page in pages:
        assert all(page.start <= r.interval_timestamp // 10**9 < page.end for r in page.rows)
    want = rows_for("ltc", start, end, interval, now=FIXED_NOW)
    served = [r for p in pages for r in p.rows]
    assert served == (want if sort == "asc" else want[::-1])
    # An empty last page follows only a last page that covered its full width.
    trailing = empty_last_page and (q.data_end - q.data_start) % width == 0
    assert len(pages) == -(-(q.data_end - q.data_start) // width) + trailing


def test_time_pages_of_the_sparse_asset_are_often_empty_and_keep_their_cursor() -> None:
    q = query(start_time="2025-01-08T00:00:00Z", end_time="2026-11-01T00:00:00Z", sort="asc")
    pages = time_pages("pepe", q, 1000)
    assert len(pages) == -(-(q.data_end - q.data_start) // (1000 * H))
    empty = [p for p in pages[:-1] if not p.rows]
    assert empty, "a 1000-hour page of pepe should fall in a quiet stretch now and then"
    assert all(p.next_position == p.end for p in empty)
    assert [r for p in pages for r in p.rows] == rows_for("pepe", *q_times(q), now=FIXED_NOW)


def q_times(q: Query) -> tuple[str, str]:
    return q.query_start_time, q.query_end_time


def test_a_clock_before_the_data_starts_is_refused() -> None:
    # It would serve nothing at all, which a client would read as "no liquidations".
    with pytest.raises(EmulatorConfigError, match="not after the data starts"):
        EmulatorConfig(now=datetime(2020, 1, 1, tzinfo=UTC))
    EmulatorConfig(now=datetime(2025, 1, 8, 1, tzinfo=UTC))  # an hour in: fine
