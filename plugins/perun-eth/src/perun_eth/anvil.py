"""A local anvil node: find the binary, start it on a free 127.0.0.1 port, stop it by PID.

anvil comes from the npm package ``@foundry-rs/anvil-linux-amd64`` (installed by
``npm ci --prefix contracts``). :class:`AnvilNode` starts it, waits until its JSON-RPC
answers, and stops it by its PID; on Linux the child is also told to die with its parent, so
it never outlives a killed process. Used by the tests (:mod:`perun_eth.testing`, which
re-exports everything here) and by ``perun demo --backend eth`` (:mod:`perun_eth.demo`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

ANVIL_ENV = "PERUN_ANVIL"
"""Environment variable naming the anvil binary to use (overrides the search)."""

_ANVIL_IN_PACKAGE = Path(
    "contracts", "node_modules", "@foundry-rs", "anvil-linux-amd64", "bin", "anvil"
)

DEFAULT_CHAIN_ID = 31337


class AnvilNotFoundError(FileNotFoundError):
    """No anvil binary was found."""


def find_anvil() -> str:
    """The path of the anvil binary.

    Looks at ``$PERUN_ANVIL``, then for ``contracts/node_modules/.../bin/anvil`` in the current
    directory, the directories above it and above this package's source, then ``anvil`` on
    ``PATH``.

    Raises:
        AnvilNotFoundError: none found (the message says how to install it).
    """
    env = os.environ.get(ANVIL_ENV)
    if env:
        if not os.access(env, os.X_OK):
            raise AnvilNotFoundError(f"${ANVIL_ENV}={env} is not an executable file")
        return env
    starts = [Path.cwd(), Path(__file__).resolve().parent]
    for start in starts:
        for d in (start, *start.parents):
            candidate = d / _ANVIL_IN_PACKAGE
            if os.access(candidate, os.X_OK):
                return str(candidate)
    on_path = shutil.which("anvil")
    if on_path:
        return on_path
    raise AnvilNotFoundError(
        "anvil not found: run `npm ci --prefix contracts` in the repository "
        f"(installs @foundry-rs/anvil-linux-amd64), or set ${ANVIL_ENV}"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def _start_lock() -> Iterator[None]:
    """Hold a machine-wide lock while a node picks its port and starts.

    :func:`free_port` only says a port is free *now*; two processes starting nodes at the
    same moment (parallel test environments) can pick the same one, and the second node's
    client would then talk to the first node. Starting one node at a time on the machine
    closes that window.
    """
    try:
        import fcntl  # noqa: PLC0415 - POSIX only, and only needed here
    except ImportError:  # pragma: no cover - not on Linux; anvil-linux-amd64 needs Linux
        yield
        return
    path = Path(tempfile.gettempdir(), "perun-anvil-start.lock")
    with open(path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Ask Linux to SIGKILL the child when the parent dies (prctl PR_SET_PDEATHSIG)."""
    import ctypes  # noqa: PLC0415 - Linux only (prctl), and only needed here

    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)


def rpc(url: str, method: str, params: Sequence[Any] = (), *, timeout: float = 10.0) -> Any:
    """One JSON-RPC call over HTTP (for node control: snapshots, time, balances).

    Raises:
        RuntimeError: the node answered with an error.
        OSError: the node could not be reached.
    """
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    req = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        answer = json.loads(resp.read())
    if "error" in answer:
        raise RuntimeError(f"{method}: {answer['error']}")
    return answer["result"]


@dataclass
class AnvilNode:
    """A local anvil process bound to 127.0.0.1.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.

    Attributes:
        chain_id: the chain ID the node reports.
        hardfork: the EVM hardfork (``"prague"``: the one the reference gas figures use).
        binary: the anvil executable (default: :func:`find_anvil`).
        extra_args: more command-line arguments (e.g. ``["--block-time", "1"]``).
    """

    chain_id: int = DEFAULT_CHAIN_ID
    hardfork: str | None = "prague"
    binary: str | None = None
    extra_args: Sequence[str] = ()
    port: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _log: Any = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        """The node's HTTP JSON-RPC endpoint."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The process ID while the node runs."""
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 30.0) -> Self:
        """Start the node and wait until it answers ``eth_chainId``.

        Retries on another port if the chosen one was taken meanwhile.

        Raises:
            AnvilNotFoundError: no anvil binary.
            RuntimeError: the node did not come up (its log is in the message).
        """
        if self._proc is not None:
            raise RuntimeError("anvil is already running")
        binary = self.binary or find_anvil()
        with _start_lock():
            return self._start_locked(binary, timeout)

    def _start_locked(self, binary: str, timeout: float) -> Self:
        last_log = ""
        for _ in range(3):
            self.port = free_port()
            args = [
                binary,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--chain-id",
                str(self.chain_id),
                "--quiet",
            ]
            if self.hardfork:
                args += ["--hardfork", self.hardfork]
            args += list(self.extra_args)
            # Closed in stop(): the log outlives this method.
            self._log = tempfile.TemporaryFile()  # noqa: SIM115
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
            # Ready, and still alive: the node that answers is ours, not one that held the
            # port already (ours would have failed to bind and exited).
            if self._wait_ready(timeout) and self._proc is not None and self._proc.poll() is None:
                return self
            last_log = self._read_log()
            self.stop()
        raise RuntimeError(f"anvil did not start: {last_log[-2000:]}")

    def _wait_ready(self, timeout: float) -> bool:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        delay = 0.01
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            with contextlib.suppress(OSError, RuntimeError, ValueError):
                if int(rpc(self.url, "eth_chainId", timeout=1.0), 16) == self.chain_id:
                    return True
            time.sleep(delay)  # waiting for a child process to bind, not for chain time
            delay = min(delay * 2, 0.1)
        return False

    def _read_log(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        data: bytes = self._log.read()
        return data.decode(errors="replace")

    def stop(self) -> None:
        """Stop the node (SIGTERM, then SIGKILL after 5 s) by its PID; idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- node control (anvil's test RPC methods) -------------------------------------------

    def call(self, method: str, *params: Any) -> Any:
        """A raw JSON-RPC call to this node."""
        return rpc(self.url, method, params)

    def snapshot(self) -> str:
        """Snapshot the chain state (``evm_snapshot``); returns the snapshot ID."""
        sid: str = self.call("evm_snapshot")
        return sid

    def revert(self, snapshot_id: str) -> None:
        """Return to a snapshot (``evm_revert``); the snapshot is used up."""
        if not self.call("evm_revert", snapshot_id):
            raise RuntimeError(f"evm_revert({snapshot_id}) failed")

    def increase_time(self, seconds: int) -> None:
        """Move chain time forward by ``seconds`` and mine a block carrying the new time."""
        self.call("evm_increaseTime", seconds)
        self.call("evm_mine")

    def set_next_timestamp(self, timestamp: int) -> None:
        """The next mined block gets exactly ``timestamp``."""
        self.call("evm_setNextBlockTimestamp", timestamp)

    def latest_timestamp(self) -> int:
        """The timestamp of the latest block."""
        return int(self.call("eth_getBlockByNumber", "latest", False)["timestamp"], 16)

    def set_balance(self, address: str, wei: int) -> None:
        """Set an account's ETH balance (``anvil_setBalance``)."""
        self.call("anvil_setBalance", address, hex(wei))
