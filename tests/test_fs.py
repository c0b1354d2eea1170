"""kaiko_liq.fs: the same contract for a local directory and for S3 (moto over loopback),
faults on the wire (a proxy cutting uploads short), and the up-front errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kaiko_liq.errors import InvalidArgumentError
from kaiko_liq.fs import (
    Entry,
    LocalStorage,
    S3Settings,
    S3Storage,
    Storage,
    StorageLockedError,
    StorageUnavailableError,
    is_remote,
    open_storage,
)
from tests.s3 import ACCESS_KEY, SECRET_KEY, FaultyProxy, S3Spot, client, free_port


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return open_storage(tmp_path / "data")
    spot: S3Spot = request.getfixturevalue("s3")
    return open_storage(spot.url(), storage_options=spot.options)


# --- the contract, both implementations -------------------------------------------------------


def test_write_read_replace(storage: Storage) -> None:
    storage.check()
    assert not storage.exists("eth/a.parquet")
    storage.write_atomic("eth/a.parquet", b"first")
    storage.write_atomic("eth/a.parquet", memoryview(b"second body"))
    assert storage.exists("eth/a.parquet")
    assert storage.read_bytes("eth/a.parquet") == b"second body"
    with pytest.raises(FileNotFoundError) as info:
        storage.read_bytes("eth/missing.parquet")
    assert info.value.filename == storage.url_of("eth/missing.parquet")


def test_list_with_sizes_sorted_and_by_prefix(storage: Storage) -> None:
    storage.write_atomic("eth/b", b"22")
    storage.write_atomic("eth/a", b"1")
    storage.write_atomic("eth/deep/c", b"333")
    storage.write_atomic("ethx/d", b"4444")
    storage.write_atomic("btc/e", b"")
    assert storage.list("eth/") == [Entry("eth/a", 1), Entry("eth/b", 2), Entry("eth/deep/c", 3)]
    assert [e.key for e in storage.list("eth")] == ["eth/a", "eth/b", "eth/deep/c", "ethx/d"]
    assert [e.key for e in storage.list()] == [
        "btc/e",
        "eth/a",
        "eth/b",
        "eth/deep/c",
        "ethx/d",
    ]
    assert storage.list("sol/") == []


def test_delete_and_move_aside(storage: Storage) -> None:
    storage.write_atomic("eth/a", b"bad")
    assert storage.move_aside("eth/a", "eth/.a.damaged-1")
    assert not storage.exists("eth/a")
    assert storage.read_bytes("eth/.a.damaged-1") == b"bad"
    assert not storage.move_aside("eth/a", "eth/.a.damaged-2")  # gone already
    storage.delete("eth/.a.damaged-1")
    storage.delete("eth/.a.damaged-1")  # not there: no error
    assert storage.list() == []


def test_lock_is_exclusive_and_released(storage: Storage) -> None:
    with storage.lock() as held:
        with pytest.raises(StorageLockedError, match="another writer holds"):
            storage.lock()
        held.refresh()
        with pytest.raises(StorageLockedError):
            storage.lock()
    with storage.lock():  # released: the next writer gets it
        pass


def test_keys_are_relative_names(storage: Storage) -> None:
    for bad in ("/abs", "../up", "a/../b", "a//b", "./a"):
        with pytest.raises(InvalidArgumentError, match="relative name"):
            storage.write_atomic(bad, b"x")


def test_arrow_filesystem_reads_where_it_lies(storage: Storage) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    ds = pytest.importorskip("pyarrow.dataset")
    for name, rows in (("eth/a.parquet", [1, 2]), ("eth/b.parquet", [3])):
        buffer = pa.BufferOutputStream()  # Parquet into memory, then one atomic write
        pq.write_table(pa.table({"x": rows}), buffer)
        storage.write_atomic(name, buffer.getvalue())
    filesystem, path = storage.arrow("eth")
    table = ds.dataset(path, filesystem=filesystem, format="parquet").to_table()
    assert sorted(table.column("x").to_pylist()) == [1, 2, 3]


# --- S3 only ---------------------------------------------------------------------------------


def test_second_lock_object_writer_is_refused_and_a_takeover_is_detected(s3: S3Spot) -> None:
    storage = open_storage(s3.url(), storage_options=s3.options)
    held = storage.lock(ttl=600)
    other = open_storage(s3.url(), storage_options=s3.options)
    with pytest.raises(StorageLockedError, match=r"pid \d+, for \d+ s more"):
        other.lock()
    # Someone deletes and re-creates the lock behind our back: refresh and release say so.
    raw = client(s3.endpoint)
    raw.delete_object(Bucket=s3.bucket, Key="data/.lock")
    thief = other.lock()
    with pytest.raises(StorageLockedError, match="taken over") as info:
        held.refresh()
    assert info.value.lost
    held.release()  # already lost: nothing more to say
    thief.release()
    assert not storage.exists(".lock")


def test_expired_lock_is_taken_over_once(s3: S3Spot) -> None:
    storage = open_storage(s3.url(), storage_options=s3.options)
    dead = storage.lock(ttl=-1)  # expired the moment it was written: a killed run's lock
    first = storage.lock()
    with pytest.raises(StorageLockedError, match="another writer"):
        storage.lock()
    with pytest.raises(StorageLockedError, match="taken over"):
        dead.release()
    first.release()


def test_write_is_one_put_and_a_dropped_upload_leaves_no_object(
    faulty_s3: tuple[S3Spot, FaultyProxy],
) -> None:
    spot, proxy = faulty_s3
    proxy.one_in = 0  # only the drops asked for
    storage = open_storage(spot.url(), storage_options=spot.options)
    storage.write_atomic("eth/old", b"v1")
    body = bytes(range(256)) * 4096  # 1 MiB: cut in half on the wire
    proxy.drop_next = True
    with pytest.raises(OSError) as info:
        storage.write_atomic("eth/new", body)
    assert info.value.filename == f"s3://{spot.bucket}/data/eth/new"
    proxy.drop_next = True
    with pytest.raises(OSError):
        storage.write_atomic("eth/old", body)
    assert not storage.exists("eth/new")
    assert storage.read_bytes("eth/old") == b"v1"  # the old version, whole
    assert [e.key for e in storage.list()] == ["eth/old"]
    assert proxy.dropped == 2


def test_one_upload_in_ten_dropped_nothing_half_written_and_a_rerun_completes(
    faulty_s3: tuple[S3Spot, FaultyProxy],
) -> None:
    spot, proxy = faulty_s3
    storage = open_storage(spot.url(), storage_options=spot.options)
    bodies = {f"eth/{i:02d}": bytes([i]) * (1000 + 37 * i) for i in range(40)}
    failed = []
    for key, body in bodies.items():
        try:
            storage.write_atomic(key, body)
        except OSError:
            failed.append(key)
    assert failed and proxy.dropped == len(failed)  # seeded: some failed, the same each run
    for entry in storage.list():
        assert storage.read_bytes(entry.key) == bodies[entry.key]  # whole, never a part
    assert sorted(e.key for e in storage.list()) == sorted(set(bodies) - set(failed))
    for key in failed:  # the next run writes what is missing
        for _attempt in range(5):
            try:
                storage.write_atomic(key, bodies[key])
                break
            except OSError:
                continue
    assert {e.key: e.size for e in storage.list()} == {k: len(b) for k, b in bodies.items()}


def test_retries_ride_out_a_dropped_upload(faulty_s3: tuple[S3Spot, FaultyProxy]) -> None:
    spot, proxy = faulty_s3
    storage = open_storage(spot.url(), storage_options={**spot.options, "max_attempts": 3})
    proxy.drop_next = True
    storage.write_atomic("eth/a", b"x" * 100_000)
    assert proxy.dropped >= 1  # the forced drop, and any the seeded one-in-ten adds
    assert storage.read_bytes("eth/a") == b"x" * 100_000


# --- errors up front: one line, what was wrong and what would be right, no secret ----------


def _one_line_no_secret(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text
    for secret in (SECRET_KEY, ACCESS_KEY):
        assert secret not in text
        assert secret not in repr(error)
    return text


def test_no_bucket(s3: S3Spot) -> None:
    storage = open_storage("s3://no-such-bucket-19/x", storage_options=s3.options)
    with pytest.raises(StorageUnavailableError) as info:
        storage.check()
    text = _one_line_no_secret(info.value)
    assert "cannot use s3://no-such-bucket-19/x: no bucket 'no-such-bucket-19' at http" in text
    assert "create it" in text
    with pytest.raises(FileNotFoundError, match="no bucket"):
        storage.write_atomic("a", b"x")


def test_unreachable_endpoint_on_a_closed_port() -> None:
    options = {
        "endpoint_url": f"http://127.0.0.1:{free_port()}",
        "key": ACCESS_KEY,
        "secret": SECRET_KEY,
        "max_attempts": 1,
    }
    storage = open_storage("s3://bucket/prefix", storage_options=options)
    with pytest.raises(StorageUnavailableError, match="endpoint http://127.0.0.1:\\d+ unreachable"):
        storage.check()
    with pytest.raises(StorageUnavailableError) as unreachable:
        storage.check()
    _one_line_no_secret(unreachable.value)
    with pytest.raises(ConnectionError) as info:
        storage.read_bytes("k")
    assert info.value.filename == "s3://bucket/prefix/k"


def test_bad_credentials_on_a_server_that_checks_them(moto_auth_endpoint: str) -> None:
    options = {"endpoint_url": moto_auth_endpoint, "key": ACCESS_KEY, "secret": SECRET_KEY}
    storage = open_storage("s3://lake/prefix", storage_options={**options, "max_attempts": 1})
    with pytest.raises(StorageUnavailableError) as info:
        storage.check()
    text = _one_line_no_secret(info.value)
    assert "access denied to bucket 'lake'" in text and "AWS_ACCESS_KEY_ID" in text
    with pytest.raises(PermissionError, match="access denied"):
        storage.read_bytes("k")


def test_local_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(StorageUnavailableError, match="exists and is not a directory"):
        open_storage(tmp_path / "f").check()


# --- configuration -------------------------------------------------------------------------


def test_environment_configures_the_endpoint_and_credentials(
    s3: S3Spot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    storage = open_storage(f"s3://{s3.bucket}/env")
    storage.check()
    storage.write_atomic("a", b"env")
    assert client(s3.endpoint).get_object(Bucket=s3.bucket, Key="env/a")["Body"].read() == b"env"
    filesystem, path = storage.arrow("a")
    assert path == f"{s3.bucket}/env/a"
    assert filesystem.open_input_stream(path).read() == b"env"


def test_unknown_profile_is_one_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    storage = open_storage("s3://b-19/p", storage_options={"profile": "nope"})
    with pytest.raises(StorageUnavailableError, match="no AWS profile 'nope'"):
        storage.check()


def test_options_and_locations_are_checked() -> None:
    with pytest.raises(InvalidArgumentError, match="unknown storage option 'endpoint'; known:"):
        open_storage("s3://b/p", storage_options={"endpoint": "x"})
    with pytest.raises(InvalidArgumentError, match="s3:// locations only"):
        open_storage("local/dir", storage_options={"region": "x"})
    with pytest.raises(InvalidArgumentError, match="only local paths and s3://"):
        open_storage("gs://b/p")
    with pytest.raises(InvalidArgumentError, match="no bucket"):
        open_storage("s3:///p")
    assert is_remote("S3://b") and not is_remote("s3") and not is_remote(Path("s3://b"))
    assert isinstance(open_storage("s3a://b/p/"), S3Storage)
    assert open_storage("s3://b/p/").url == "s3://b/p"
    assert isinstance(open_storage("rel/dir"), LocalStorage)


def test_no_credentials_in_reprs() -> None:
    settings = S3Settings.from_options({"key": ACCESS_KEY, "secret": SECRET_KEY, "token": "t" * 9})
    storage = S3Storage("b", "p", settings)
    for text in (repr(settings), repr(storage)):
        assert SECRET_KEY not in text and ACCESS_KEY not in text and "t" * 9 not in text


def test_importing_fs_imports_nothing_heavy() -> None:
    code = (
        "import sys, kaiko_liq.fs; "
        "print(sorted(m for m in ('pyarrow', 'botocore', 'moto') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
