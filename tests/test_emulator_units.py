"""The emulator's pure parts: tokens, rate limiting, paging, parameters, faults, gzip."""

from __future__ import annotations

import base64
import gzip
import itertools
import os
import zlib
from collections import Counter

import pytest

from kaiko_liq.emulator import EmulatorConfig, EmulatorStats, rows_for
from kaiko_liq.emulator.compression import GzipAssembler, crc32_combine, gzip_bytes
from kaiko_liq.emulator.errors import Rejection
from kaiko_liq.emulator.faults import FAULT_MIX, Fault, FaultInjector, Latency
from kaiko_liq.emulator.paging import slice_page
from kaiko_liq.emulator.params import Query, parse_query
from kaiko_liq.emulator.ratelimit import KeyedRateLimiter, TokenBucket
from kaiko_liq.emulator.tokens import TokenCodec
from kaiko_liq.errors import InvalidArgumentError

H = 3600


def query(**params: str) -> Query:
    return parse_query("eth", params)


# --- continuation tokens --------------------------------------------------------------------


def test_a_token_round_trips_and_is_url_safe() -> None:
    codec = TokenCodec(seed=0)
    q = query(start_time="2025-03-01T00:30:00+01:00", page_size="7")
    token = codec.encode(q, 1_740_787_200)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert codec.decode(token) == (q, 1_740_787_200)
    assert TokenCodec(seed=0).encode(q, 1_740_787_200) == token  # reproducible


def test_every_single_byte_edit_is_refused() -> None:
    codec = TokenCodec(seed=0)
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
    token = TokenCodec(seed=1).encode(query(), 0)
    with pytest.raises(Rejection):
        TokenCodec(seed=2).decode(token)


# --- rate limiting, on a fake clock ---------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_allows_one_second_of_burst_then_the_rate() -> None:
    clock = FakeClock()
    limiter = KeyedRateLimiter(5.0, clock=clock)
    assert [limiter.acquire("k") for _ in range(5)] == [0.0] * 5
    assert limiter.acquire("k") == pytest.approx(0.2)
    clock.now += 0.1
    assert limiter.acquire("k") == pytest.approx(0.1)  # a refusal takes nothing
    clock.now += 0.1
    assert limiter.acquire("k") == 0.0
    assert limiter.acquire("k") > 0
    clock.now += 10  # long idle: refills to the capacity, not beyond
    assert [limiter.acquire("k") for _ in range(6)][-2:] == [0.0, pytest.approx(0.2)]


def test_buckets_are_per_key() -> None:
    clock = FakeClock()
    limiter = KeyedRateLimiter(1.0, clock=clock)
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") == pytest.approx(1.0)
    assert limiter.acquire("b") == 0.0


def test_a_slow_rate_still_has_a_burst_of_one() -> None:
    clock = FakeClock()
    bucket = TokenBucket(0.25, max(1.0, 0.25), clock)
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
            empty_last_page=empty_last_page,
        )
        assert len(page.rows) <= limit
        assert page.next_position is None or len(page.rows) == limit
        served += page.rows
        windows.append((page.start, page.end))
        position = page.next_position
    want = rows_for("ltc", "2025-03-01T00:00:00Z", "2025-03-03T00:00:00Z")
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
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidArgumentError, match=next(iter(kwargs))):
        EmulatorConfig(**kwargs)  # type: ignore[arg-type]


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
