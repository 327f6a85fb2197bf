"""``perun sim serve``: the served ledger as a command of ``perun`` (perun-sim registers it
through ``perun_register_commands``), started and stopped like an operator would."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys

import pytest
from perun_sim import SimBackend

from perun_core.cli import main


async def _serve(*args: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "perun_core.cli",
        "sim",
        "serve",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    assert "(manual clock) listening on tcp://127.0.0.1:" in line, line
    return proc, line.rsplit(" ", 1)[1].strip()


async def test_perun_sim_serve_serves_a_ledger_until_sigterm() -> None:
    proc, url = await _serve("--manual-clock", "--start", "70", "--port", "0")
    try:
        backend = SimBackend.from_config({"url": url})
        try:
            assert await backend.ledger_time() == 70
            addr = backend.wallet().new_account().address
            asset = backend.default_assets()[0]
            await backend.faucet(addr, asset, 5)
            assert await backend.balance_of(addr, asset) == 5
        finally:
            await backend.close()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)  # to its PID: a clean stop
    assert await asyncio.wait_for(proc.wait(), 10) == 0


def test_a_taken_port_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["sim", "serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("perun: error: sim serve: ") and err.count("\n") == 1


def test_sim_serve_is_listed_with_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "simulated ledger: serve one to clients in other processes" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["sim", "serve", "--help"])
    text = capsys.readouterr().out
    assert "--manual-clock" in text and "--unix" in text and "--latency" in text
