"""Protocol rules on plain bytes: URLs, parameters, answer classification, next_url safety."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kaiko_liq.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    InvalidArgumentError,
    MalformedBodyError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    UnexpectedResponseError,
    UnsafeURLError,
    redact_url,
)
from kaiko_liq.protocol import (
    check_base_url,
    check_next_url,
    first_page_params,
    page_url,
    parse_page,
    region_base_url,
)
from kaiko_liq.query import parse_interval
from tests.seed import seed_response_json

URL = "https://us.market-api.kaiko.io/v2/data/liquidation.v1/token/eth"


def test_seed_page_parses_with_its_next_url() -> None:
    page = parse_page(200, seed_response_json().encode(), URL)
    assert len(page.rows) == 1 and not page.is_last
    assert page.next_url is not None and page.next_url.startswith(URL + "?continuation_token=")
    assert page.continuation_token is not None


def test_a_page_without_next_url_or_without_rows_is_the_last() -> None:
    assert parse_page(200, b'{"result":"success","data":[]}', URL).is_last
    empty_with_next = b'{"data":[],"next_url":"' + URL.encode() + b'?continuation_token=x"}'
    assert parse_page(200, empty_with_next, URL).is_last


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, AuthenticationError),
        (404, NotFoundError),
        (429, RateLimitedError),
        (500, ServerError),
        (503, ServerError),
        (405, APIError),
    ],
)
def test_error_statuses_map_to_kinds_with_kaikos_message(status: int, kind: type[APIError]) -> None:
    body = b'{"result": "error", "message": "Something specific"}'
    with pytest.raises(kind) as info:
        parse_page(status, body, URL)
    assert type(info.value) is kind
    assert info.value.status == status and info.value.message == "Something specific"
    assert f"HTTP {status}" in str(info.value) and URL in str(info.value)


def test_error_bodies_that_are_not_json_are_quoted() -> None:
    with pytest.raises(ServerError, match="Bad Gateway"):
        parse_page(502, b"<html>Bad Gateway</html>", URL)


def test_a_200_that_says_error_is_an_error() -> None:
    with pytest.raises(APIError, match="quota exceeded"):
        parse_page(200, b'{"result": "error", "message": "quota exceeded"}', URL)


def test_cut_bodies_and_wrong_shapes_are_told_apart() -> None:
    with pytest.raises(MalformedBodyError):
        parse_page(200, seed_response_json().encode()[:300], URL)
    with pytest.raises(UnexpectedResponseError, match="no 'data'"):
        parse_page(200, b'{"result": "success"}', URL)
    with pytest.raises(
        UnexpectedResponseError, match=r"does not match the documented fields.*\$\.data\[0\]"
    ):
        parse_page(200, b'{"data": [{"interval_time": "x"}]}', URL)


def test_first_page_params_and_url() -> None:
    params = first_page_params(
        datetime(2025, 1, 31, 9, 0, 1, tzinfo=UTC),
        datetime(2025, 2, 28, tzinfo=UTC),
        parse_interval("4h"),
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
    assert page_url(region_base_url("eu"), "eth") == (
        "https://eu.market-api.kaiko.io/v2/data/liquidation.v1/token/eth"
    )


def test_next_url_must_stay_on_the_configured_origin() -> None:
    base = "https://eu.market-api.kaiko.io"
    same = base + "/v2/data/liquidation.v1/token/eth?continuation_token=abc"
    assert check_next_url(same, base) == same
    assert check_next_url(same.replace("https://eu.market-api.kaiko.io", base + ":443"), base)
    for foreign in (
        "https://us.market-api.kaiko.io/v2/x?continuation_token=abc",
        "http://eu.market-api.kaiko.io/v2/x?continuation_token=abc",
        "https://eu.market-api.kaiko.io.evil.example/v2/x",
        "https://eu.market-api.kaiko.io:8443/v2/x",
    ):
        with pytest.raises(UnsafeURLError, match="not followed"):
            check_next_url(foreign, base)


def test_base_url_http_only_to_loopback() -> None:
    assert check_base_url("http://127.0.0.1:8080/") == "http://127.0.0.1:8080"
    assert check_base_url("http://localhost:1") == "http://localhost:1"
    with pytest.raises(InvalidArgumentError, match="clear text"):
        check_base_url("http://proxy.example.com")
    assert check_base_url("http://proxy.example.com", allow_insecure_http=True)
    with pytest.raises(InvalidArgumentError, match="not an http"):
        check_base_url("ftp://x")


def test_redacted_urls_hide_keys_and_shorten_tokens() -> None:
    url = URL + "?api_key=SECRET123&continuation_token=" + "A" * 80
    text = redact_url(url)
    assert "SECRET123" not in text and "A" * 20 not in text
