"""``write_files`` and ``check_output_location`` on an object store (moto in server mode):
the same bytes as a local write, one PUT per file, nothing half-written, errors up front."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from kaiko_liq import outputs
from kaiko_liq.errors import InvalidArgumentError
from kaiko_liq.export import check_output_location, write_files, write_stdout
from kaiko_liq.fs import S3Storage, StorageUnavailableError
from kaiko_liq.outputs import format_for_path
from tests.s3 import ACCESS_KEY, SECRET_KEY, FaultyProxy, S3Spot, client, free_port
from tests.test_export import DATA, ETH

NAMES = ["liq.parquet", "liq.csv", "liq.csv.gz", "liq.jsonl", "liq.jsonl.gz"]


def _objects(spot: S3Spot) -> dict[str, bytes]:
    """Every object in the spot's bucket, read behind the code under test."""
    s3 = client(spot.endpoint)
    listed = s3.list_objects_v2(Bucket=spot.bucket).get("Contents", [])
    return {
        o["Key"]: s3.get_object(Bucket=spot.bucket, Key=o["Key"])["Body"].read() for o in listed
    }


def _no_secret(error: BaseException) -> str:
    text = str(error)
    for secret in (ACCESS_KEY, SECRET_KEY):
        assert secret not in text and secret not in repr(error)
    return text


@pytest.mark.parametrize("name", NAMES)
def test_every_format_reads_back_as_the_local_bytes(s3: S3Spot, tmp_path: Path, name: str) -> None:
    fmt = format_for_path(name)
    local = write_files(tmp_path / name, DATA, fmt)
    remote = write_files(
        f"s3://{s3.bucket}/lake/2026/{name}", DATA, fmt, storage_options=s3.options
    )
    assert remote == [f"s3://{s3.bucket}/lake/2026/{p.name}" for p in local]
    assert _objects(s3) == {f"lake/2026/{p.name}": p.read_bytes() for p in local}


def test_a_dropped_upload_leaves_no_object_and_the_old_pair_intact(
    faulty_s3: tuple[S3Spot, FaultyProxy], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spot, proxy = faulty_s3
    proxy.one_in = 0  # only the drops asked for
    url = f"s3://{spot.bucket}/liq.csv"

    proxy.drop_next = True  # a new key: nothing appears
    with pytest.raises(OSError) as dropped:
        write_files(f"s3://{spot.bucket}/new.jsonl", DATA, "jsonl", storage_options=spot.options)
    assert dropped.value.filename == f"s3://{spot.bucket}/new.jsonl"
    _no_secret(dropped.value)
    assert _objects(spot) == {}

    write_files(url, {"eth": ETH}, "csv", storage_options=spot.options)
    old = _objects(spot)
    assert sorted(old) == ["liq.csv", "liq.exchanges.csv"]
    proxy.drop_next = True  # the first upload (the breakdown): both old objects stay whole
    with pytest.raises(OSError):
        write_files(url, DATA, "csv", storage_options=spot.options)
    assert _objects(spot) == old

    # The second upload (the main file) dropped: the documented in-between state, the
    # breakdown new and the main file old, never the main file newer than its breakdown.
    real = S3Storage.write_atomic
    calls: list[str] = []

    def second_dropped(self: S3Storage, key: str, data: Any) -> None:
        calls.append(key)
        proxy.drop_next = len(calls) == 2
        real(self, key, data)

    monkeypatch.setattr(S3Storage, "write_atomic", second_dropped)
    with pytest.raises(OSError):
        write_files(url, DATA, "csv", storage_options=spot.options)
    assert calls == ["liq.exchanges.csv", "liq.csv"]
    new = {p.name: p.read_bytes() for p in write_files(tmp_path / "liq.csv", DATA, "csv")}
    assert _objects(spot) == {"liq.csv": old["liq.csv"], "liq.exchanges.csv": new[calls[0]]}
    monkeypatch.undo()

    write_files(url, DATA, "csv", storage_options=spot.options)  # the rerun heals the pair
    assert _objects(spot) == new
    assert proxy.dropped == 3


def test_the_pair_is_built_whole_before_either_upload(
    s3: S3Spot, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = outputs._in_memory
    built: list[bytes] = []

    def second_fails(*args: Any) -> bytes:
        if built:
            raise MemoryError("the second file could not be built")
        built.append(real(*args))
        return built[-1]

    monkeypatch.setattr(outputs, "_in_memory", second_fails)
    with pytest.raises(MemoryError):
        write_files(f"s3://{s3.bucket}/liq.parquet", DATA, "parquet", storage_options=s3.options)
    assert built and _objects(s3) == {}


def test_up_front_check_passes_and_writes_nothing(s3: S3Spot) -> None:
    for name in NAMES:
        check_output_location(
            f"s3://{s3.bucket}/a/{name}", format_for_path(name), storage_options=s3.options
        )
    check_output_location("-", "jsonl")
    assert _objects(s3) == {}


def test_up_front_no_bucket(s3: S3Spot) -> None:
    with pytest.raises(StorageUnavailableError) as info:
        check_output_location("s3://no-such-bucket-19/liq.csv", "csv", storage_options=s3.options)
    assert "no bucket 'no-such-bucket-19'" in _no_secret(info.value)
    with pytest.raises(FileNotFoundError, match="no bucket") as written:
        write_files("s3://no-such-bucket-19/liq.csv", DATA, "csv", storage_options=s3.options)
    assert written.value.filename == "s3://no-such-bucket-19/liq.exchanges.csv"


def _options(endpoint: str) -> dict[str, Any]:
    return {"endpoint_url": endpoint, "key": ACCESS_KEY, "secret": SECRET_KEY, "max_attempts": 1}


def test_up_front_endpoint_unreachable() -> None:
    options = _options(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(StorageUnavailableError) as info:
        check_output_location("s3://lake/liq.parquet", "parquet", storage_options=options)
    assert "unreachable" in _no_secret(info.value)


def test_up_front_access_denied(moto_auth_endpoint: str) -> None:
    options = _options(moto_auth_endpoint)
    with pytest.raises(StorageUnavailableError) as info:
        check_output_location("s3://lake/liq.jsonl", "jsonl", storage_options=options)
    assert "access denied to bucket 'lake'" in _no_secret(info.value)


def test_up_front_bad_locations(s3: S3Spot, tmp_path: Path) -> None:
    for url in (f"s3://{s3.bucket}", f"s3://{s3.bucket}/", f"s3://{s3.bucket}/dir/"):
        with pytest.raises(InvalidArgumentError, match="names no file"):
            check_output_location(url, "csv", storage_options=s3.options)
    with pytest.raises(InvalidArgumentError, match="only local paths and s3://"):
        check_output_location("gs://lake/liq.csv", "csv")
    with pytest.raises(InvalidArgumentError, match="only local paths and s3://"):
        write_files("gs://lake/liq.csv", DATA, "csv")
    with pytest.raises(InvalidArgumentError, match="storage_options apply to s3://"):
        check_output_location(tmp_path / "liq.csv", "csv", storage_options=s3.options)
    with pytest.raises(InvalidArgumentError, match="storage_options apply to s3://"):
        write_files(tmp_path / "liq.csv", DATA, "csv", storage_options=s3.options)
    with pytest.raises(InvalidArgumentError, match="Parquet compresses"):
        check_output_location(f"s3://{s3.bucket}/liq.parquet.gz", "parquet")
    assert _objects(s3) == {} and list(tmp_path.iterdir()) == []


def test_up_front_local_checks(tmp_path: Path) -> None:
    check_output_location(tmp_path / "liq.parquet", "parquet")
    (tmp_path / "liq.exchanges.csv").mkdir()
    with pytest.raises(InvalidArgumentError, match="liq.exchanges.csv: it is a directory"):
        check_output_location(tmp_path / "liq.csv", "csv")
    check_output_location(tmp_path / "liq.jsonl", "jsonl")  # one file: no sibling to check
    with pytest.raises(FileNotFoundError) as missing:
        check_output_location(tmp_path / "nowhere" / "liq.csv", "csv")
    assert missing.value.filename == str(tmp_path / "nowhere" / "liq.csv")
    with pytest.raises(InvalidArgumentError, match="not a regular file"):
        check_output_location("/dev/null", "jsonl")


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_write_stdout_unaffected(tmp_path: Path, fmt: Any) -> None:
    out = io.BytesIO()
    write_stdout(DATA, fmt, stream=out)
    [first, *_] = write_files(tmp_path / f"liq.{fmt}", DATA, fmt)
    assert out.getvalue() == first.read_bytes()
