"""resolve_api_key: one resolution for the library and the CLI (argument, file, env)."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from kaiko_liq import LiquidationClient
from kaiko_liq.errors import InvalidArgumentError
from kaiko_liq.keys import resolve_api_key

KEY = "3f9a1c2b7e8d4a6f"


@pytest.mark.parametrize(
    "data",
    [
        KEY.encode(),
        (KEY + "\n").encode(),
        (KEY + "\r\n").encode(),
        (" " + KEY + " \n").encode(),
        codecs.BOM_UTF8 + (KEY + "\n").encode(),
        codecs.BOM_UTF16_LE + (KEY + "\r\n").encode("utf-16-le"),
        codecs.BOM_UTF16_BE + KEY.encode("utf-16-be"),
    ],
    ids=["plain", "newline", "crlf", "spaces", "utf8-bom", "utf16le-bom", "utf16be-bom"],
)
def test_a_key_file_in_any_common_encoding_gives_the_same_key(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "key"
    path.write_bytes(data)
    assert resolve_api_key(key_file=path, environ={}) == KEY


@pytest.mark.parametrize("raw", [KEY, KEY + "\n", f"  {KEY}\t\n"])
def test_whitespace_is_dropped_the_same_way_from_every_source(tmp_path: Path, raw: str) -> None:
    path = tmp_path / "key"
    path.write_text(raw)
    assert resolve_api_key(raw, environ={}) == KEY
    assert resolve_api_key(key_file=path, environ={}) == KEY
    assert resolve_api_key(environ={"KAIKO_API_KEY": raw}) == KEY


def test_the_argument_wins_then_the_file_then_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("from-file")
    env = {"KAIKO_API_KEY": "from-env"}
    assert resolve_api_key("from-arg", key_file=path, environ=env) == "from-arg"
    assert resolve_api_key(key_file=path, environ=env) == "from-file"
    assert resolve_api_key(environ=env) == "from-env"


def test_no_key_is_an_error_only_when_one_is_required() -> None:
    assert resolve_api_key(environ={}, required=False) is None
    assert resolve_api_key(environ={"KAIKO_API_KEY": "  "}, required=False) is None
    with pytest.raises(InvalidArgumentError, match=r"no API key; pass api_key.*KAIKO_API_KEY"):
        resolve_api_key(environ={})
    with pytest.raises(InvalidArgumentError, match="set but empty"):
        resolve_api_key(environ={"KAIKO_API_KEY": "\n"})


def test_the_cli_names_its_own_sources() -> None:
    names = {"file": "--api-key-file", "environment": "KAIKO_API_KEY"}
    with pytest.raises(InvalidArgumentError) as caught:
        resolve_api_key(environ={}, source_names=names)
    assert str(caught.value) == "no API key; pass --api-key-file, or set KAIKO_API_KEY"


def _message(**kwargs: object) -> str:
    with pytest.raises(InvalidArgumentError) as caught:
        resolve_api_key(environ={}, **kwargs)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_errors_are_one_line_and_never_show_the_contents(tmp_path: Path) -> None:
    secret = "s3cr3t-" + "x" * 20
    latin1 = tmp_path / "latin1"
    latin1.write_bytes((secret + "é").encode("latin-1"))
    assert "not text in UTF-8" in (m := _message(key_file=latin1)) and secret not in m
    inner = tmp_path / "inner-space"
    inner.write_text(f"{secret} {secret}\n")
    assert "cannot carry" in (m := _message(key_file=inner)) and secret not in m
    two_lines = tmp_path / "two-lines"
    two_lines.write_text(f"{secret}\n{secret}\n")
    assert "cannot carry" in (m := _message(key_file=two_lines)) and secret not in m
    assert secret not in _message(api_key=secret + "\x00")
    assert secret not in _message(api_key=secret + "é")
    empty = tmp_path / "empty"
    empty.write_bytes(codecs.BOM_UTF8 + b"\n")
    assert "is empty" in _message(key_file=empty)
    missing = tmp_path / "missing"
    assert "cannot read" in (m := _message(key_file=missing)) and "No such file" in m
    big = tmp_path / "big"
    big.write_bytes(b"k" * 100_000)
    assert "larger than" in _message(key_file=big)
    assert "must be a string" in _message(api_key=b"bytes-key")


def test_a_directory_given_as_the_key_file_is_one_line(tmp_path: Path) -> None:
    assert "cannot read" in _message(key_file=tmp_path)


def test_the_client_resolves_its_key_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIKO_API_KEY", f" {KEY}\n")
    client = LiquidationClient()
    assert client._transport._api_key == KEY  # type: ignore[attr-defined]
    assert KEY not in repr(client)
    monkeypatch.delenv("KAIKO_API_KEY")
    with pytest.raises(InvalidArgumentError, match="no API key.*base_url"):
        LiquidationClient()
    with pytest.raises(InvalidArgumentError, match="cannot carry") as caught:
        LiquidationClient(f"{KEY} {KEY}")
    assert KEY not in str(caught.value)


def test_a_key_passed_as_the_key_files_path_is_not_shown(tmp_path: Path) -> None:
    key = "abcdefghijklmnopqrstuvwxyzABCDEF"  # no digit: no pattern would take it for a key
    with pytest.raises(InvalidArgumentError) as caught:
        resolve_api_key(key_file=key, environ={})
    assert key not in str(caught.value) and "No such file" in str(caught.value)
    with pytest.raises(InvalidArgumentError, match="missing.txt"):  # a path is still named
        resolve_api_key(key_file=tmp_path / "missing.txt", environ={})
