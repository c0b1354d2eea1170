"""``kaiko-liq fetch -o s3://…`` and ``events -o s3://…`` as subprocesses against a real
S3 server (moto, started by the tests): the objects hold the same bytes as the local
files, and a bucket that is not there is refused in one line, exit 2, before anything is
fetched."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from tests.conftest import EmulatorFactory
from tests.s3 import ACCESS_KEY, SECRET_KEY, S3Spot, client
from tests.test_cli import CLI, Result, environment, one_error_line

WINDOW = ["--start", "2025-02-01", "--end", "2025-02-08"]


async def cli_s3(endpoint: str, *args: str) -> Result:
    """The CLI with the standard AWS environment pointing at ``endpoint``."""
    env = environment() | {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": "us-east-1",
    }
    done = await anyio.run_process([*CLI, *args], check=False, env=env)
    return Result(done.returncode, done.stdout, done.stderr.decode())


def s3_bytes(spot: S3Spot, key: str) -> bytes:
    body: bytes = client(spot.endpoint).get_object(Bucket=spot.bucket, Key=key)["Body"].read()
    return body


@pytest.mark.parametrize("name", ["liq.parquet", "liq.csv.gz"])
async def test_fetch_to_s3_equals_the_local_files(
    make_emulator: EmulatorFactory, s3: S3Spot, tmp_path: Path, name: str
) -> None:
    emu = await make_emulator()
    common = ("fetch", "eth", "btc", *WINDOW, "--base-url", emu.base_url)
    local = await cli_s3(s3.endpoint, *common, "-o", str(tmp_path / name))
    remote = await cli_s3(s3.endpoint, *common, "-o", f"s3://{s3.bucket}/run/{name}")
    assert local.code == 0 and remote.code == 0, remote.stderr
    sibling = name.replace("liq.", "liq.exchanges.")
    for file in (name, sibling):
        assert s3_bytes(s3, f"run/{file}") == (tmp_path / file).read_bytes()
    assert SECRET_KEY not in remote.stderr and ACCESS_KEY not in remote.stderr


async def test_events_to_s3(make_emulator: EmulatorFactory, s3: S3Spot, tmp_path: Path) -> None:
    emu = await make_emulator()
    spec = "binc:perpetual-future:btc-usdt"
    common = ("events", spec, "--start", "2025-05-16", "--end", "2025-05-17")
    common += ("--base-url", emu.base_url)
    local = await cli_s3(s3.endpoint, *common, "-o", str(tmp_path / "ev.jsonl"))
    remote = await cli_s3(s3.endpoint, *common, "-o", f"s3://{s3.bucket}/ev.jsonl")
    assert local.code == 0 and remote.code == 0, remote.stderr
    assert s3_bytes(s3, "ev.jsonl") == (tmp_path / "ev.jsonl").read_bytes()


async def test_a_missing_bucket_is_refused_before_anything_is_fetched(
    make_emulator: EmulatorFactory, s3: S3Spot
) -> None:
    emu = await make_emulator()
    done = await cli_s3(
        s3.endpoint, "fetch", "eth", *WINDOW, "--base-url", emu.base_url,
        "-o", "s3://no-such-bucket-kaiko/x.csv",
    )  # fmt: skip
    assert done.code == 2, done.stderr
    line = one_error_line(done.stderr)
    assert "no-such-bucket-kaiko" in line
    assert SECRET_KEY not in line and ACCESS_KEY not in line
    assert emu.stats.total_requests == 0


async def test_an_unreachable_endpoint_is_refused_up_front(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = await cli_s3(
        f"http://127.0.0.1:{port}", "fetch", "eth", *WINDOW, "--emulator",
        "-o", "s3://bucket/x.csv",
    )  # fmt: skip
    assert done.code == 2, done.stderr
    assert "SYNTHETIC" not in done.stderr  # refused before the emulator even started
    one_error_line(done.stderr)
