"""A perun client in its own OS process, driven line by line over its stdin and stdout.

The multi-process tests run their peers this way (and ``perun demo --bus tcp`` runs Bob so):
the child serves one wire identity on a :mod:`perun-tcp <perun_tcp>` bus, uses a sim ledger
served by another process (:mod:`perun_sim.server`), accepts channel proposals and does what
the parent asks. The parent uses :class:`PeerProcess`; the child runs :func:`main`::

    python -m perun_core.testing.peer --ledger tcp://127.0.0.1:7545 --peer 0xALICE \\
        --peer-endpoint tcp://127.0.0.1:7001 [--listen tcp://127.0.0.1:0] [--funds N] \\
        [--persister leveldb --db PATH] [--cheat] [--tower ADDRESS=ENDPOINT ...]

The account's key seed comes from the environment (``PERUN_PEER_SEED``; a random account
without it), not from the command line, where other local users could read it.

Protocol: one JSON object per line. The child first prints ``{"ready": true, "address",
"endpoint", "pid"}``; then it answers every command line ``{"cmd": NAME, ...}`` with one line
``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``, in order:

==================  ============================================================
command             effect and answer
==================  ============================================================
``channel``         wait (``timeout`` s) for the next channel opened with us (or
                    restored); answers its view (``id``, ``version``,
                    ``balances``, ``phase``, ``synced``)
``channels``        the views of every channel (``channels``), restored ones too
``propose``         open a channel with the peer: we deposit ``mine``, it
                    deposits ``theirs`` (``challenge_duration`` s; ``app``: an
                    installed app's name); the view once funded
``state``           the view of channel ``id``
``pay``             send ``amount`` to the peer in channel ``id``; the new view
``settle``          settle channel ``id`` (cooperatively or through the ledger)
``register``        register channel ``id`` on the ledger; the view
``force_pay``       force a payment of ``amount`` to the peer in the registered
                    app channel ``id`` on the ledger; the view
``stale``           the signed state of channel ``id`` in which we owned the most
``register_stale``  register that state on the ledger (a cheating peer; ``--cheat``
                    also turns off our watchtower and automatic settlement)
``protected``       the version of channel ``id`` a remote watchtower (``--tower``)
                    acknowledged (``version``; ``null``: none yet)
``quit``            close everything and exit 0 (so does the end of stdin)
==================  ============================================================
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from perun_core.channel.allocation import Allocation
from perun_core.channel.state import Transaction
from perun_core.channel.types import Address
from perun_core.client import Channel, Client, ClientConfig, LedgerChannelProposal
from perun_core.errors import PerunError
from perun_core.interfaces.adjudicator import AdjudicatorReq
from perun_core.interfaces.persister import Persister
from perun_core.plugins import load_plugins
from perun_core.watcher.base import Watcher
from perun_core.wire.messages import Envelope, Ping

SEED_ENV = "PERUN_PEER_SEED"
"""Environment variable holding the child's account seed (text)."""

PersisterWrapper = Callable[[Persister], Persister]
"""Wraps the child's persister (see :func:`main`)."""

log = logging.getLogger("perun.testing.peer")


class PeerProcessError(PerunError):
    """The peer process failed to start, answered a command with an error, or died."""


# --- the parent's side -------------------------------------------------------------------------


class PeerProcess:
    """Controls one child process running :func:`main` (ended by its PID, never by name).

    Use :meth:`spawn`; always :meth:`close` it (``try``/``finally``), which asks it to quit
    and kills it if it does not within the timeout.
    """

    def __init__(self, proc: asyncio.subprocess.Process, address: Address, endpoint: str) -> None:
        self.proc = proc
        self.address = address
        self.endpoint = endpoint
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int:
        """The child's process ID."""
        return self.proc.pid

    @classmethod
    async def spawn(
        cls,
        *,
        ledger_url: str | None = None,
        peer: Address,
        backend: str = "sim",
        backend_config: Mapping[str, Any] | None = None,
        peer_endpoint: str | None = None,
        listen: str = "tcp://127.0.0.1:0",
        funds: int = 0,
        seed: str | None = None,
        persister: str = "memory",
        db: str | None = None,
        cheat: bool = False,
        update_timeout: float = 10.0,
        ready_timeout: float = 30.0,
        module: str = "perun_core.testing.peer",
        env: dict[str, str] | None = None,
        towers: Sequence[tuple[Address, str]] = (),
    ) -> PeerProcess:
        """Start a peer process and wait until it listens.

        Args:
            ledger_url: the served sim ledger (with the ``sim`` backend).
            backend: the chain backend plugin.
            backend_config: its ``from_config`` mapping (JSON-serialisable; default
                ``{"url": ledger_url}``).
            peer: the wire address of the party it talks to (our own).
            peer_endpoint: where it reaches us (it can also answer over our connection).
            listen: where it listens (``tcp://127.0.0.1:0``: a free port).
            funds: faucet credit in the ledger's native asset at start.
            seed: its account seed (a random account if ``None``); passed in the environment.
            persister: persister plugin name; ``db`` is its path if it needs one.
            cheat: no watchtower, no automatic settlement (for the dispute demo).
            update_timeout: the child's client update timeout (seconds).
            ready_timeout: seconds to wait for it to listen.
            module: the module run as the child (``python -m``); it must speak this
                module's protocol (e.g. :mod:`perun_core.testing.crash`).
            env: extra environment variables for the child.
            towers: remote watchtowers ``(address, endpoint)`` the child hands its states to.

        Raises:
            PeerProcessError: it exited or did not get ready in time (it is killed then).
        """
        argv = [
            sys.executable,
            "-m",
            module,
            "--backend",
            backend,
            "--backend-config",
            json.dumps(dict(backend_config) if backend_config else {"url": ledger_url}),
            "--peer",
            peer.hex(),
            "--listen",
            listen,
            "--funds",
            str(funds),
            "--persister",
            persister,
            "--update-timeout",
            str(update_timeout),
        ]
        if peer_endpoint is not None:
            argv += ["--peer-endpoint", peer_endpoint]
        if db is not None:
            argv += ["--db", db]
        if cheat:
            argv.append("--cheat")
        for tower, tower_endpoint in towers:
            argv += ["--tower", f"{tower.hex()}={tower_endpoint}"]
        child_env = dict(os.environ)
        child_env.pop(SEED_ENV, None)
        child_env.update(env or {})
        if seed is not None:
            child_env[SEED_ENV] = seed
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=child_env
        )
        try:
            hello = await asyncio.wait_for(_read_json(proc), ready_timeout)
            if not hello.get("ready"):
                raise PeerProcessError(f"the peer process did not start: {hello}")
            return cls(proc, Address.from_hex(hello["address"]), hello["endpoint"])
        except BaseException as e:
            await _kill(proc)
            if isinstance(e, TimeoutError):
                raise PeerProcessError(
                    f"the peer process did not listen within {ready_timeout:g}s"
                ) from None
            raise

    async def call(self, cmd: str, *, timeout: float = 30.0, **args: Any) -> dict[str, Any]:  # noqa: ASYNC109 - every wait has a deadline; this one takes it as an argument
        """Send one command and return its answer.

        Raises:
            PeerProcessError: the command failed in the child, or the child died or did not
                answer within ``timeout`` seconds.
        """
        async with self._lock:  # one command at a time keeps answers in order
            stdin = self.proc.stdin
            if stdin is None or self.proc.returncode is not None:
                raise PeerProcessError(f"the peer process {self.pid} is not running")
            stdin.write((json.dumps({"cmd": cmd, **args}) + "\n").encode())
            try:
                await stdin.drain()
                answer = await asyncio.wait_for(_read_json(self.proc), timeout)
            except TimeoutError:
                raise PeerProcessError(
                    f"the peer process {self.pid} did not answer {cmd!r} within {timeout:g}s"
                ) from None
            except ConnectionError as e:
                raise PeerProcessError(f"the peer process {self.pid} is gone: {e}") from None
        if not answer.get("ok"):
            raise PeerProcessError(f"peer {cmd} failed: {answer.get('error', answer)}")
        return answer

    async def close(self, timeout: float = 10.0) -> int | None:  # noqa: ASYNC109 - every wait has a deadline; this one takes it as an argument
        """Ask the child to quit; kill it (by PID) if it does not exit within ``timeout``.

        Returns:
            Its exit status.
        """
        if self.proc.returncode is None:
            with contextlib.suppress(PeerProcessError, ConnectionError):
                await asyncio.wait_for(self.call("quit", timeout=timeout), timeout)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), timeout)
        await _kill(self.proc)
        return self.proc.returncode

    async def kill(self) -> None:
        """End the child at once (SIGKILL to its PID), as a crash would."""
        await _kill(self.proc)


async def _read_json(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    assert proc.stdout is not None
    line = await proc.stdout.readline()
    if not line:
        code = await proc.wait()
        raise PeerProcessError(f"the peer process {proc.pid} exited with status {code}")
    try:
        value = json.loads(line)
    except ValueError:
        raise PeerProcessError(f"the peer process said {line[:200]!r}") from None
    if not isinstance(value, dict):
        raise PeerProcessError(f"the peer process said {line[:200]!r}")
    return value


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
    if proc.stdin is not None:
        proc.stdin.close()


# --- the child's side --------------------------------------------------------------------------


@dataclass(slots=True)
class _Best:
    """The signed transaction in which we owned the most (what a cheater would register)."""

    balance: int
    tx: Transaction


class _Peer:
    """The child: one client, its channels, and the command handlers."""

    def __init__(self, client: Client, peer: Address) -> None:
        self.client = client
        self.peer = peer
        self.new_channels: asyncio.Queue[Channel] = asyncio.Queue()
        self.best: dict[bytes, _Best] = {}
        client.on_proposal(lambda p, r: r.accept())
        client.on_new_channel(self._on_channel)
        client.add_tx_listener(self._on_tx)

    def _on_channel(self, ch: Channel) -> None:
        tx = ch.transaction
        if tx is not None and ch.id not in self.best:
            self.best[ch.id] = _Best(tx.state.balances[0][ch.idx], tx)
        self.new_channels.put_nowait(ch)

    def _on_tx(self, ch: Channel, tx: Transaction) -> None:
        mine = tx.state.balances[0][ch.idx]
        best = self.best.get(ch.id)
        if tx.fully_signed and (best is None or mine > best.balance):
            self.best[ch.id] = _Best(mine, tx)

    def _channel(self, args: dict[str, Any]) -> Channel:
        return self.client.channel(bytes.fromhex(str(args["id"])))

    async def _propose(self, cmd: str, args: dict[str, Any]) -> Channel:
        mine, theirs = int(args["mine"]), int(args["theirs"])
        if cmd == "propose_sub":
            return await self._channel(args).propose_sub_channel([[mine, theirs]])
        asset = self.client.backend.default_assets()[0]
        return await self.client.propose_channel(
            LedgerChannelProposal(
                peer=self.peer,
                allocation=Allocation((asset,), ((mine, theirs),)),
                challenge_duration=int(args.get("challenge_duration", 60)),
                app=self.client.app_id(str(args["app"])) if args.get("app") else None,
            )
        )

    async def handle(self, args: dict[str, Any]) -> dict[str, Any]:
        cmd = args.get("cmd")
        if cmd == "channel":
            ch = await asyncio.wait_for(self.new_channels.get(), float(args.get("timeout", 30)))
            return _view(ch)
        if cmd == "channels":
            return {"channels": [_view(ch) for ch in self.client.channels]}
        if cmd in ("propose", "propose_sub"):
            return _view(await self._propose(cmd, args))
        if cmd == "state":
            return _view(self._channel(args))
        if cmd == "protected":
            return {"version": self._channel(args).protected_version}
        if cmd == "pay":
            ch = self._channel(args)
            await ch.send(int(args["amount"]))
            return _view(ch)
        if cmd == "settle":
            ch = self._channel(args)
            await ch.settle()
            return _view(ch)
        if cmd == "register":
            ch = self._channel(args)
            await ch.register()
            return _view(ch)
        if cmd == "force_pay":
            ch = self._channel(args)
            amount, me = int(args["amount"]), ch.idx
            await ch.force_update(lambda s: s.transfer(me, ch.peer_idx, amount))
            return _view(ch)
        if cmd in ("stale", "register_stale"):
            ch = self._channel(args)
            best = self.best[ch.id]
            if cmd == "register_stale":
                await self.client.adjudicator.register(AdjudicatorReq(ch.params, best.tx, ch.idx))
            st = best.tx.state
            return {"version": st.version, "balances": [list(r) for r in st.balances]}
        raise ValueError(f"unknown command {cmd!r}")


async def _reconnect(bus: Any, me: Address, peers: set[Address]) -> None:
    """Bring up the connection to every peer of a restored channel.

    Channels restored from the store sync when a connection to their peer comes up
    (see docs/protocols.md); until then an update of ours waits for that sync. A restarted
    process is the one that knows it must reconnect, so it dials: a ``Ping`` (consumed by the
    peer's bus) opens the connection and both clients start the sync from ``on_connect``.
    """
    for peer in sorted(peers):
        try:
            await bus.publish(Envelope(me, peer, Ping(time.time_ns())))
        except PerunError as e:  # unreachable now: the sync waits for a later connection
            log.warning("cannot reconnect to %s after the restart: %s", peer, e)


def _towers(specs: Sequence[str]) -> list[Watcher]:
    """Remote watchers of ``--tower ADDRESS=ENDPOINT`` options."""
    from perun_core.watcher.remote import RemoteWatcher  # noqa: PLC0415 - only with --tower

    out: list[Watcher] = []
    for spec in specs:
        address, _, endpoint = spec.partition("=")
        out.append(RemoteWatcher(Address.from_hex(address), endpoint or None))
    return out


def _view(ch: Channel) -> dict[str, Any]:
    return {
        "id": ch.id.hex(),
        "version": ch.state.version,
        "balances": [list(r) for r in ch.state.balances],
        "phase": ch.phase.name,
        # no sync round pending or running (see docs/protocols.md)
        "synced": ch.synced,
        "parent": ch.parent.hex() if ch.parent is not None else None,
        "locked": [sa.id.hex() for sa in ch.state.allocation.locked],
    }


def _emit(value: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m perun_core.testing.peer",
        description="A perun client in its own process, driven over stdin/stdout.",
    )
    p.add_argument("--ledger", default=None, help="URL of the served sim ledger")
    p.add_argument("--backend", default="sim", help="chain backend plugin (default sim)")
    p.add_argument(
        "--backend-config", default=None, help="the backend's configuration (JSON object)"
    )
    p.add_argument("--peer", required=True, help="wire address of the other party (hex)")
    p.add_argument("--peer-endpoint", default=None, help="where the other party listens")
    p.add_argument("--listen", default="tcp://127.0.0.1:0", help="where to listen")
    p.add_argument("--funds", type=int, default=0, help="faucet credit at start")
    p.add_argument("--persister", default="memory", help="persister plugin")
    p.add_argument("--db", default=None, help="path of a durable persister's database")
    p.add_argument("--cheat", action="store_true", help="no watchtower, no auto-settle")
    p.add_argument("--update-timeout", type=float, default=10.0, help="client update timeout")
    p.add_argument(
        "--tower",
        action="append",
        default=[],
        help="a remote watchtower ADDRESS=ENDPOINT to hand our states to (repeatable)",
    )
    return p


async def _run(args: argparse.Namespace, wrap_persister: PersisterWrapper | None = None) -> int:
    plugins = load_plugins()
    config = json.loads(args.backend_config) if args.backend_config else {"url": args.ledger}
    backend = plugins.chain(args.backend).from_config(config)
    bus: Any = None
    client: Client | None = None
    stdin_pipe: asyncio.ReadTransport | None = None
    try:
        seed = os.environ.get(SEED_ENV)
        wallet: Any = backend.wallet()
        account = wallet.add_seed(seed.encode()) if seed else wallet.new_account()
        asset = backend.default_assets()[0]
        if args.funds:
            await backend.faucet(account.address, asset, args.funds)
        bus = await plugins.buses.open(
            "tcp", {"listen": [args.listen]}, account=account, backend=backend
        )
        endpoint = bus.advertised_endpoints()[0]
        peer = Address.from_hex(args.peer)
        if args.peer_endpoint:
            bus.add_peer(peer, args.peer_endpoint)
        persister_args = {"path": args.db} if args.db else {}
        persister: Persister = await plugins.persisters.open(
            args.persister, persister_args, account=account, backend=backend
        )
        if wrap_persister is not None:
            persister = wrap_persister(persister)
        client = Client(
            account=account,
            backend=backend,
            bus=bus,
            persister=persister,
            watchers=_towers(args.tower),
            config=ClientConfig(
                update_timeout=args.update_timeout,
                proposal_timeout=30,
                watch=not args.cheat,
                auto_settle=not args.cheat,
            ),
        )
        peer_state = _Peer(client, peer)
        await client.start()
        await _reconnect(bus, account.address, {ch.peer for ch in client.channels})
        _emit(
            {
                "ready": True,
                "address": account.address.hex(),
                "endpoint": str(endpoint),
                "pid": os.getpid(),
            }
        )
        loop = asyncio.get_running_loop()
        stdin = asyncio.StreamReader()
        stdin_pipe, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin
        )
        while line := await stdin.readline():
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("a command is a JSON object")
                if request.get("cmd") == "quit":
                    _emit({"ok": True})
                    break
                answer = await peer_state.handle(request)
            except Exception as e:  # noqa: BLE001 - every failure is reported to the parent, not fatal
                _emit({"ok": False, "error": f"{type(e).__name__}: {e}"})
            else:
                _emit({"ok": True, **answer})
        return 0
    finally:
        if stdin_pipe is not None:
            stdin_pipe.close()
        if client is not None:
            await client.close()
        if bus is not None:
            await bus.close()
        await backend.close()


def _interrupt(signum: int, frame: object) -> None:
    # SIGTERM ends the process through the normal clean-up path, like Ctrl-C.
    raise KeyboardInterrupt


def main(
    argv: Sequence[str] | None = None, *, wrap_persister: PersisterWrapper | None = None
) -> int:
    """The child's entry point; returns its exit status.

    Args:
        argv: the command line (default ``sys.argv[1:]``).
        wrap_persister: wraps the persister the command line names before the client
            gets it (the crash tests inject faults this way, see
            :mod:`perun_core.testing.crash`).
    """
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    # Records of loggers with a level of their own (a logging plugin may set perun's to
    # INFO) reach the root handler whatever the root's level: the handler filters them.
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.ERROR)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return asyncio.run(_run(args, wrap_persister))
    except KeyboardInterrupt:
        return 0
    except PerunError as e:
        _emit({"ready": False, "error": f"{type(e).__name__}: {e}"})
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
