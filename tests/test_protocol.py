"""Protocol rules on plain bytes: URLs, parameters, answer classification, bodies,
next_url safety. :func:`decipher` is fed whole answers (status, headers, raw body), as
gidgethub's tests feed ``sansio.decipher_response``."""

from __future__ import annotations

import gzip
import zlib
from datetime import UTC, datetime
from urllib.parse import quote_plus

import pytest

from kaiko_liq.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    InvalidArgumentError,
    MalformedBodyError,
    NotFoundError,
    RateLimitedError,
    ResponseTooLargeError,
    ServerError,
    UnexpectedResponseError,
    UnsafeURLError,
    is_fatal,
    redact,
    redact_url,
)
from kaiko_liq.plan import SubRange
from kaiko_liq.protocol import (
    ERROR_EXCERPT_CHARS,
    Page,
    Retry,
    check_base_url,
    check_next_url,
    decipher,
    error_message,
    inflate,
    region_base_url,
)
from kaiko_liq.query import parse_interval
from kaiko_liq.routes.token import TOKEN, Token
from tests.seed import seed_response_json

URL = "https://us.market-api.kaiko.io/v2/data/liquidation.v1/token/eth"
CAP = 1 << 20


def page_of(body: bytes, headers: dict[str, str] | None = None, status: int = 200) -> Page:
    outcome = decipher(status, headers or {}, body, URL, max_bytes=CAP)
    assert isinstance(outcome, Page), outcome
    return outcome


def retry_of(body: bytes, headers: dict[str, str] | None = None, status: int = 200) -> Retry:
    outcome = decipher(status, headers or {}, body, URL, max_bytes=CAP)
    assert isinstance(outcome, Retry), outcome
    return outcome


def test_seed_page_parses_with_its_next_url() -> None:
    page = page_of(seed_response_json().encode())
    assert len(page.rows) == 1 and not page.is_last
    assert page.next_url is not None and page.next_url.startswith(URL + "?continuation_token=")
    assert page.continuation_token is not None


def test_only_a_page_with_neither_cursor_is_the_last() -> None:
    assert page_of(b'{"result":"success","data":[]}').is_last
    # An empty page with a next_url, or with a token alone, is not the end.
    empty_with_next = b'{"data":[],"next_url":"' + URL.encode() + b'?continuation_token=x"}'
    assert not page_of(empty_with_next).is_last
    token_only = page_of(b'{"data":[],"continuation_token":"abc","next_url":""}')
    assert not token_only.is_last and token_only.next_url is None
    assert token_only.continuation_token == "abc"
    assert page_of(b'{"data":[],"continuation_token":"","next_url":null}').is_last


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, AuthenticationError),
        (404, NotFoundError),
        (405, APIError),
    ],
)
def test_final_statuses_raise_their_kind_with_kaikos_message(
    status: int, kind: type[APIError]
) -> None:
    body = b'{"result": "error", "message": "Something specific"}'
    with pytest.raises(kind) as info:
        decipher(status, {}, body, URL, max_bytes=CAP)
    assert type(info.value) is kind
    assert info.value.status == status and info.value.message == "Something specific"
    assert f"HTTP {status}" in str(info.value) and URL in str(info.value)
    assert is_fatal(info.value)


@pytest.mark.parametrize(
    ("status", "kind"), [(429, RateLimitedError), (500, ServerError), (502, ServerError)]
)
def test_transient_statuses_are_a_retry_carrying_the_error(
    status: int, kind: type[APIError]
) -> None:
    retry = retry_of(b'{"result":"error","message":"later"}', {"Retry-After": "7"}, status)
    assert type(retry.error) is kind and retry.error.message == "later"
    assert retry.retry_after == 7.0 and retry.rate_limited is (status == 429)


def test_error_bodies_that_are_not_json_are_quoted() -> None:
    retry = retry_of(b"<html>Bad Gateway</html>", status=502)
    assert "Bad Gateway" in str(retry.error)


def test_a_redirect_is_final_and_names_where_it_pointed() -> None:
    with pytest.raises(UnexpectedResponseError, match="redirect to https://evil.example/x"):
        decipher(302, {"Location": "https://evil.example/x"}, b"", URL, max_bytes=CAP)


def test_a_200_that_says_error_is_an_error() -> None:
    with pytest.raises(APIError, match="quota exceeded"):
        decipher(200, {}, b'{"result": "error", "message": "quota exceeded"}', URL, max_bytes=CAP)


def test_cut_bodies_and_wrong_shapes_are_told_apart() -> None:
    assert isinstance(retry_of(seed_response_json().encode()[:300]).error, MalformedBodyError)
    with pytest.raises(UnexpectedResponseError, match="no 'data'"):
        page_of(b'{"result": "success"}')
    with pytest.raises(
        UnexpectedResponseError, match=r"does not match the documented fields.*\$\.data\[0\]"
    ):
        page_of(b'{"data": [{"interval_time": "x"}]}')


def test_gzip_and_deflate_bodies_are_inflated() -> None:
    body = seed_response_json().encode()
    assert len(page_of(gzip.compress(body), {"Content-Encoding": "gzip"}).rows) == 1
    assert len(page_of(zlib.compress(body), {"Content-Encoding": "deflate"}).rows) == 1
    raw = zlib.compressobj(wbits=-15)
    raw_deflate = raw.compress(body) + raw.flush()
    assert len(page_of(raw_deflate, {"Content-Encoding": "deflate"}).rows) == 1
    # Two gzip members are one body (RFC 1952 allows it).
    half = len(body) // 2
    members = gzip.compress(body[:half]) + gzip.compress(body[half:])
    assert inflate(members, "gzip", CAP, URL) == body
    # A gzip error page is read too.
    retry = retry_of(gzip.compress(b'{"message":"down"}'), {"Content-Encoding": "gzip"}, 503)
    assert retry.error.args and "down" in str(retry.error)


def test_a_gzip_stream_cut_short_or_corrupt_is_retried() -> None:
    packed = gzip.compress(seed_response_json().encode())
    cut = retry_of(packed[: len(packed) // 2], {"Content-Encoding": "gzip"})
    assert isinstance(cut.error, MalformedBodyError) and "cut short" in str(cut.error)
    corrupt = retry_of(packed[:10] + b"\xff" * 40 + packed[50:], {"Content-Encoding": "gzip"})
    assert isinstance(corrupt.error, MalformedBodyError) and "corrupt" in str(corrupt.error)
    assert not is_fatal(cut.error)


def test_an_encoding_never_asked_for_is_refused() -> None:
    with pytest.raises(UnexpectedResponseError, match="'br'-encoded"):
        decipher(200, {"Content-Encoding": "br"}, b"x", URL, max_bytes=CAP)


def test_bodies_over_the_cap_are_refused_compressed_or_inflated() -> None:
    bomb = gzip.compress(b" " * (8 * CAP))
    assert len(bomb) < CAP // 10
    with pytest.raises(ResponseTooLargeError, match=f"max_response_bytes \\({CAP:,} bytes\\)"):
        decipher(200, {"Content-Encoding": "gzip"}, bomb, URL, max_bytes=CAP)
    with pytest.raises(ResponseTooLargeError):
        decipher(200, {}, b" " * (CAP + 1), URL, max_bytes=CAP)
    # Exactly at the cap is fine.
    assert inflate(gzip.compress(b"a" * CAP), "gzip", CAP, URL) == b"a" * CAP
    error = ResponseTooLargeError("x", URL)
    assert isinstance(error, UnexpectedResponseError) and is_fatal(error)


def test_error_text_is_redacted_before_it_is_shortened() -> None:
    key = "K3y-" + "s" * 36
    # The key straddles the excerpt's cut: a cut first would leave its first half.
    filler = "x" * (ERROR_EXCERPT_CHARS - 10)
    for body in (
        (filler + key + " tail").encode(),
        b'{"result":"error","message":"' + (filler + key).encode() + b'"}',
    ):
        text = error_message(body, [key])
        assert key[:4] not in text and text.startswith(filler + "***")
        retry = decipher(500, {}, body, URL, max_bytes=CAP, secrets=[key])
        assert isinstance(retry, Retry) and key[:8] not in str(retry.error)
    # Without the secret, a cut would have left this much of it:
    assert key[:10] in (filler + key)[:ERROR_EXCERPT_CHARS]


def test_first_page_params_and_url() -> None:
    params = token_params(
        datetime(2025, 1, 31, 9, 0, 1, tzinfo=UTC),
        datetime(2025, 2, 28, tzinfo=UTC),
        "4h",
        "asc",
        1000,
    )
    assert params == {
        "interval": "4h",
        "sort": "asc",
        "start_time": "2025-01-31T09:00:01Z",
        "end_time": "2025-02-28T00:00:00Z",
        "page_size": "1000",
    }
    assert region_base_url("eu") + TOKEN.path(Token("eth", parse_interval("1h"))) == (
        "https://eu.market-api.kaiko.io/v2/data/liquidation.v1/token/eth"
    )


def test_times_are_sent_to_the_millisecond_start_down_end_up() -> None:
    params = token_params(
        datetime(2025, 1, 31, 9, 0, 1, 123_999, tzinfo=UTC),
        datetime(2025, 2, 28, 0, 0, 0, 1, tzinfo=UTC),
        "1h",
        "desc",
        10,
    )
    assert params["start_time"] == "2025-01-31T09:00:01.123Z"
    assert params["end_time"] == "2025-02-28T00:00:00.001Z"
    exact = token_params(
        datetime(2025, 1, 31, 9, 0, 1, 5000, tzinfo=UTC),
        datetime(2025, 2, 28, 0, 0, 0, 5000, tzinfo=UTC),
        "1h",
        "desc",
        10,
    )
    assert exact["start_time"] == "2025-01-31T09:00:01.005Z"
    assert exact["end_time"] == "2025-02-28T00:00:00.005Z"


def test_next_url_must_keep_the_origin_and_the_path() -> None:
    base = "https://eu.market-api.kaiko.io"
    request = base + "/v2/data/liquidation.v1/token/eth"
    same = request + "?continuation_token=abc"
    assert check_next_url(same, request) == same
    assert check_next_url(same.replace(base, base + ":443"), request)
    for foreign in (
        "https://us.market-api.kaiko.io/v2/data/liquidation.v1/token/eth?continuation_token=a",
        "http://eu.market-api.kaiko.io/v2/data/liquidation.v1/token/eth?continuation_token=a",
        "https://eu.market-api.kaiko.io.evil.example/v2/data/liquidation.v1/token/eth",
        "https://eu.market-api.kaiko.io:8443/v2/data/liquidation.v1/token/eth",
    ):
        with pytest.raises(UnsafeURLError, match="not followed, so the API key"):
            check_next_url(foreign, request)
    for elsewhere in (
        base + "/v2/data/liquidation.v1/token/btc?continuation_token=abc",
        base + "/v2/data/trades.v1/token/eth?continuation_token=abc",
        base + "/v2/data/liquidation.v1/token/eth/?continuation_token=abc",
        base + "/v2/data/liquidation.v1/token/eth/../btc?continuation_token=abc",
    ):
        with pytest.raises(UnsafeURLError, match="not the requested /v2/data/liquidation"):
            check_next_url(elsewhere, request)


def test_base_url_http_only_to_loopback() -> None:
    assert check_base_url("http://127.0.0.1:8080/") == "http://127.0.0.1:8080"
    assert check_base_url("http://localhost:1") == "http://localhost:1"
    with pytest.raises(InvalidArgumentError, match="clear text"):
        check_base_url("http://proxy.example.com")
    assert check_base_url("http://proxy.example.com", allow_insecure_http=True)
    with pytest.raises(InvalidArgumentError, match="not an http"):
        check_base_url("ftp://x")


def test_redacted_urls_hide_keys_in_path_and_query_and_shorten_tokens() -> None:
    url = URL + "?api_key=SECRET123&sig=SIG456&continuation_token=" + "A" * 80
    text = redact_url(url)
    assert "SECRET123" not in text and "SIG456" not in text and "A" * 20 not in text
    assert "continuation_token=" + "A" * 12 + "…" in text
    echoed = "https://h/v2/MYKEY-1234/eth?x=MYKEY-1234&y=MYKEY%2B1234"
    cleaned = redact_url(echoed, ["MYKEY-1234", "MYKEY+1234"])
    assert "MYKEY" not in cleaned and cleaned == "https://h/v2/***/eth?x=***&y=***"


def test_redact_finds_keys_in_every_form_a_server_echoes_them() -> None:
    key = "k3y/With+Odd=Chars"
    text = "X-Api-Key: HDRVALUE1 " + (
        f'{{"api_key": "JSONVALUE2", "path": "/v2/{key}/x", "q": "?x={quote_plus(key)}"}}'
    )
    cleaned = redact(text + " --api-key=FLAGVALUE3 monkey=4 token=TOK5", [key])
    for secret in ("HDRVALUE1", "JSONVALUE2", "FLAGVALUE3", "TOK5", key, quote_plus(key)):
        assert secret not in cleaned
    assert "monkey=4" in cleaned and "/v2/***/x" in cleaned
    # Short strings are never taken for keys: they would garble every message.
    assert redact("a key k", ["k"]) == "a key k"
    # Prose that names a key is not a header: "key: pass" keeps its words.
    assert redact("no API key: pass one, or a token: see docs") == (
        "no API key: pass one, or a token: see docs"
    )


def token_params(
    start: datetime, end: datetime, interval: str, sort: str, page_size: int
) -> dict[str, str]:
    """The token route's first-page parameters for ``[start, end)``."""
    target = Token("eth", parse_interval(interval))
    return TOKEN.first_params(target, SubRange(start, end), sort, page_size)
