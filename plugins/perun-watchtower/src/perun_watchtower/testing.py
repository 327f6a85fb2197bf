"""Test and demo helpers: a tower in its own OS process, and the offline-client scenario.

:class:`TowerProcess` runs ``python -m perun_watchtower serve`` with a generated
``tower.toml`` (its own account, its own LevelDB store, a TCP listener) and ends it by its
PID only. :func:`offline_client_dispute` is the campaign of the watchtower issue: Alice hands
her states to the tower(s) and is SIGKILLed; Mallory registers every older state she holds;
the tower refutes; Alice returns days of ledger time later and withdraws her latest balance.
It runs on any backend whose ledger other processes can join (sim served, anvil).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perun_core.channel.allocation import Allocation
from perun_core.channel.state import Transaction
from perun_core.channel.types import Address
from perun_core.client import Channel, Client, ClientConfig, LedgerChannelProposal
from perun_core.errors import ChainError, PerunError
from perun_core.interfaces.adjudicator import AdjudicatorReq, RegisteredEvent
from perun_core.interfaces.chain import ChainBackend
from perun_core.testing.peer import PeerProcess

DAY = 24 * 3600


class TowerProcessError(PerunError):
    """The tower process did not start or answer as expected."""


def free_port() -> int:
    """A currently free loopback TCP port (for a tower that must keep its port on restart)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML form for {v!r}")


def tower_toml(
    *,
    backend: str,
    chain: Mapping[str, Any],
    seed: str,
    account: Address,
    port: int,
    db: Path,
    store: str = "leveldb",
    limits: Mapping[str, Any] | None = None,
) -> str:
    """A ``tower.toml`` for a tower on ``backend`` (``chain`` is its table, without keys)."""
    lines = [
        "[perun]",
        f'backend = "{backend}"',
        'bus = "tcp"',
        f'persister = "{store}"',
        f'account = "{account.hex()}"',
        "",
        f"[perun.{backend}]",
    ]
    lines += [f"{k} = {_toml_value(v)}" for k, v in chain.items()]
    lines += [f"seeds = {_toml_value([seed])}", ""]
    lines += ["[perun.tcp]", f'listen = ["tcp://127.0.0.1:{port}"]', ""]
    lines += [f"[perun.{store}]", f"path = {_toml_value(str(db))}", ""]
    if limits:
        lines += ["[watchtower]"] + [f"{k} = {_toml_value(v)}" for k, v in limits.items()]
    return "\n".join(lines) + "\n"


class TowerProcess:
    """``python -m perun_watchtower serve`` in a child process (ended by its PID only)."""

    def __init__(self, proc: asyncio.subprocess.Process, hello: dict[str, Any]) -> None:
        self.proc = proc
        self.address = Address.from_hex(hello["address"])
        self.endpoint = str(hello["endpoint"])
        self.restored = int(hello.get("restored", 0))

    @property
    def pid(self) -> int:
        """The child's process ID."""
        return self.proc.pid

    @classmethod
    async def spawn(cls, config: Path, *, ready_timeout: float = 60.0) -> TowerProcess:
        """Start a tower with the configuration file ``config`` and wait until it serves.

        Raises:
            TowerProcessError: it exited or did not get ready in time (it is killed then).
        """
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "perun_watchtower",
            "serve",
            "--config",
            str(config),
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), ready_timeout)
            hello = json.loads(line) if line else {"ready": False, "error": "exited"}
            if not hello.get("ready"):
                raise TowerProcessError(f"the tower did not start: {hello.get('error')}")
            return cls(proc, hello)
        except BaseException as e:
            await _end(proc, kill=True)
            if isinstance(e, TimeoutError):
                raise TowerProcessError(
                    f"the tower did not serve within {ready_timeout:g}s"
                ) from None
            raise

    async def kill(self) -> None:
        """SIGKILL, as a crash would."""
        await _end(self.proc, kill=True)

    async def close(self) -> int | None:
        """SIGTERM (a clean stop), then SIGKILL if it does not exit within 10 s."""
        await _end(self.proc, kill=False)
        return self.proc.returncode


async def _end(proc: asyncio.subprocess.Process, *, kill: bool) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            if kill:
                proc.kill()
            else:
                proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


@dataclass
class TowerSpec:
    """One tower of a scenario: its configuration file and, while it runs, its process."""

    config: Path
    address: Address
    endpoint: str
    proc: TowerProcess | None = None

    async def start(self) -> TowerProcess:
        """Start (or restart) the tower."""
        self.proc = await TowerProcess.spawn(self.config)
        return self.proc


async def prepare_towers(
    backend: ChainBackend,
    chain: Mapping[str, Any],
    root: Path,
    count: int,
    *,
    funds: int = 1,
) -> list[TowerSpec]:
    """Configuration files for ``count`` towers with funded accounts (not started)."""
    specs = []
    for i in range(count):
        seed = f"watchtower {i} of {root}"
        account = backend.wallet().add_seed(seed.encode())  # type: ignore[attr-defined]
        with contextlib.suppress(PerunError, NotImplementedError):
            # A development faucet tops the account up with what refutations cost (gas).
            await backend.faucet(account.address, backend.default_assets()[0], funds)
        port = free_port()
        path = root / f"tower{i}.toml"
        path.write_text(
            tower_toml(
                backend=backend.name,
                chain=chain,
                seed=seed,
                account=account.address,
                port=port,
                db=root / f"tower{i}.db",
            )
        )
        specs.append(TowerSpec(path, account.address, f"tcp://127.0.0.1:{port}"))
    return specs


async def _protected(alice: PeerProcess, cid: str, version: int) -> bool:
    return bool((await alice.call("protected", id=cid))["version"] == version)


async def _poll(cond: Callable[[], Awaitable[bool]], what: str, timeout: float = 60.0) -> None:  # noqa: ASYNC109 - every wait has a deadline; this one takes it as an argument
    """Wait until the async ``cond()`` holds (checked every 50 ms)."""
    try:
        async with asyncio.timeout(timeout):
            while not await cond():  # noqa: ASYNC110 - the condition lives in other processes
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise TowerProcessError(f"timed out after {timeout:g}s waiting for {what}") from None


@dataclass
class DisputeResult:
    """What :func:`offline_client_dispute` observed."""

    latest_version: int
    alice_latest_balance: int
    alice_deposit: int
    alice_final: int
    alice_initial: int
    mallory_final: int
    mallory_initial: int
    registered_versions: list[int] = field(default_factory=list)
    stale_refused: int = 0


async def offline_client_dispute(  # noqa: C901 - the campaign's script, step by step
    backend: ChainBackend,
    *,
    peer_ledger: Mapping[str, Any],
    chain: Mapping[str, Any],
    root: Path,
    towers: int = 1,
    down: int = 0,
    restart_mid_dispute: bool = False,
    payments: int = 5,
    challenge_duration: int = 600,
    offline_days: int = 3,
) -> DisputeResult:
    """Alice (a child process) hands her states to ``towers`` towers, is SIGKILLed; Mallory
    (this process) registers every older state; the towers refute; Alice returns
    ``offline_days`` later and withdraws.

    Args:
        backend: a backend on the shared ledger (with ``faucet``, ``advance_time``,
            ``balances``).
        peer_ledger: how :meth:`PeerProcess.spawn` reaches the ledger (``ledger_url`` or
            ``backend`` + ``backend_config``).
        chain: the backend's table for the towers' configuration.
        root: a directory for the towers' and Alice's databases.
        towers: how many towers Alice uses.
        down: how many of them are killed before Mallory cheats (the rest must refute).
        restart_mid_dispute: kill every tower before Mallory registers and restart them
            during the refutation window (they refute from their stores).
        payments: Mallory pays Alice this many times (each a version Mallory would like to
            undo).
        challenge_duration: of the channel, in ledger seconds.
        offline_days: how long Alice stays away (ledger time).
    """
    from perun_core.plugins import load_plugins  # noqa: PLC0415 - only when run

    asset = backend.default_assets()[0]
    specs = await prepare_towers(backend, chain, root, towers)
    plugins = load_plugins()
    mallory_acct = backend.wallet().new_account()
    funds, deposit = 1_000, 100
    await backend.faucet(mallory_acct.address, asset, funds)
    bus = await plugins.buses.open("tcp", None, account=mallory_acct, backend=backend)
    mallory = Client(
        account=mallory_acct,
        backend=backend,
        bus=bus,
        config=ClientConfig(watch=False, auto_settle=False),
    )
    signed: list[Transaction] = []
    mallory.add_tx_listener(lambda ch, tx: signed.append(tx) if tx.fully_signed else None)
    alice: PeerProcess | None = None
    alice_seed = f"alice of {root}"
    alice_db = str(root / "alice.db")
    try:
        for spec in specs:
            await spec.start()
        alice = await PeerProcess.spawn(
            **peer_ledger,
            peer=mallory_acct.address,
            peer_endpoint=str(bus.advertised_endpoints()[0]),
            funds=funds,
            seed=alice_seed,
            persister="leveldb",
            db=alice_db,
            towers=[(s.address, s.endpoint) for s in specs],
        )
        bus.add_peer(alice.address, alice.endpoint)
        alice_initial = await backend.balance_of(alice.address, asset)
        mallory_initial = await backend.balance_of(mallory_acct.address, asset)
        async with mallory:
            ch: Channel = await mallory.propose_channel(
                LedgerChannelProposal(
                    peer=alice.address,
                    allocation=Allocation((asset,), ((deposit, deposit),)),
                    challenge_duration=challenge_duration,
                )
            )
            cid = ch.id.hex()
            await alice.call("channel", timeout=30)
            for _ in range(payments):
                await ch.send(10)
            latest = ch.state.version
            alice_latest = ch.state.balances[0][1]

            first = alice
            await _poll(
                lambda: _protected(first, cid, latest),
                "the tower's acknowledgement of Alice's latest state",
            )
            await alice.kill()  # SIGKILL: Alice is offline from here on
            for spec in specs[:down]:
                assert spec.proc is not None
                await spec.proc.kill()
            if restart_mid_dispute:
                for spec in specs[down:]:
                    assert spec.proc is not None
                    await spec.proc.kill()

            events = await mallory.adjudicator.subscribe(ch.params)
            registered: list[int] = []
            stale_refused = 0
            older = sorted(
                (tx for tx in signed if tx.state.version < latest), key=lambda t: t.state.version
            )
            try:
                for i, tx in enumerate(older):
                    try:
                        await mallory.adjudicator.register(AdjudicatorReq(ch.params, tx, ch.idx))
                    except ChainError:
                        stale_refused += 1  # the ledger holds a newer state already
                        continue
                    if i == 0 and restart_mid_dispute:
                        for spec in specs[down:]:
                            await spec.start()  # restores from its store and refutes
                    # Wait for the refutation: a registration of the latest version.
                    async with asyncio.timeout(60):
                        while True:
                            ev = await events.next()
                            assert ev is not None
                            if isinstance(ev, RegisteredEvent):
                                registered.append(ev.version)
                                if ev.version == latest:
                                    break
            finally:
                await events.close()

            # Days later (ledger time), Alice comes back and settles from her store.
            await backend.advance_time(offline_days * DAY)
            alice = await PeerProcess.spawn(
                **peer_ledger,
                peer=mallory_acct.address,
                peer_endpoint=str(bus.advertised_endpoints()[0]),
                seed=alice_seed,
                persister="leveldb",
                db=alice_db,
                towers=[(s.address, s.endpoint) for s in specs[down:]],
            )
            bus.add_peer(alice.address, alice.endpoint)
            # Mallory settles too (the ledger pays her what the latest state gives her).
            await ch.settle()

            expected = alice_initial - deposit + alice_latest
            returned = alice

            async def alice_paid() -> bool:
                return bool(await backend.balance_of(returned.address, asset) == expected)

            await _poll(alice_paid, "Alice's withdrawal after her return")
        return DisputeResult(
            latest_version=latest,
            alice_latest_balance=alice_latest,
            alice_deposit=deposit,
            alice_final=await backend.balance_of(alice.address, asset),
            alice_initial=alice_initial,
            mallory_final=await backend.balance_of(mallory_acct.address, asset),
            mallory_initial=mallory_initial,
            registered_versions=registered,
            stale_refused=stale_refused,
        )
    finally:
        if alice is not None:
            await alice.close()
        for spec in specs:
            if spec.proc is not None:
                await spec.proc.close()
        await bus.close()
