"""The channel state machine under random message orders, drops, duplicates and crashes.

Two parties run the update protocol's discipline on their :class:`Machine` (stage, sign,
persist, send; enable on acceptance; discard and burn on rejection or collision) over a
network that delivers in any order, loses and duplicates messages; either may crash and come
back from what it wrote. A sync round, once the network is quiet, must bring both to the
same state; no party may ever sign two different states with one version; what a party wrote
is always exactly its record.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from perun_core.channel.allocation import Allocation
from perun_core.channel.machine import (
    Enabled,
    Machine,
    PersistEvent,
    PhaseChanged,
    Removed,
    SigAdded,
    Staged,
)
from perun_core.channel.params import Params
from perun_core.channel.phase import Phase
from perun_core.channel.state import State, Transaction
from perun_core.channel.types import Asset

CID = b"\x07" * 32
ASSET = Asset(1, b"ETH")
PARAMS = Params(
    challenge_duration=60,
    participants=(b"\x01" * 20, b"\x02" * 20),
    nonce=1,
    app=None,
    ledger_channel=True,
    virtual_channel=False,
    aux=b"",
    backend="model",
    id=CID,
)


def sig_of(who: int, state: State) -> bytes:
    """A stand-in signature: who signed which state (the model checks it exactly)."""
    return bytes([who]) + repr((state.version, state.balances, state.is_final)).encode()


@dataclass
class Disk:
    """What a party wrote, applied like a persister would."""

    phase: Phase
    current: Transaction | None
    staging: Transaction | None = None
    floor: int = 0
    needs_sync: bool = False

    def apply(self, ev: PersistEvent | None) -> None:
        if ev is None:
            return
        if isinstance(ev, Enabled):
            self.current, self.phase, self.staging = ev.current, ev.phase, None
        elif isinstance(ev, PhaseChanged):
            self.phase, self.floor, self.needs_sync = ev.phase, ev.version_floor, ev.needs_sync
        elif isinstance(ev, Staged):
            self.staging, self.phase = ev.staging, ev.phase
        elif isinstance(ev, SigAdded):
            assert self.staging is not None
            self.staging = self.staging.with_sig(ev.idx, ev.sig)
        elif isinstance(ev, Removed):
            raise AssertionError("no channel is removed in this model")


@dataclass
class Party:
    idx: int
    m: Machine
    disk: Disk
    signed: dict[int, State] = field(default_factory=dict)
    own: int | None = None  # version of our proposal in flight

    def sign(self, state: State) -> bytes:
        prev = self.signed.get(state.version)
        assert prev is None or prev == state, f"party {self.idx} signed v{state.version} twice"
        self.signed[state.version] = state
        return sig_of(self.idx, state)

    def write(self, *events: PersistEvent | None) -> None:
        for ev in events:
            self.disk.apply(ev)


def v0() -> Transaction:
    st0 = State(CID, 0, Allocation((ASSET,), ((50, 50),)))
    return Transaction(st0, (sig_of(0, st0), sig_of(1, st0)))


class TwoParties(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        tx = v0()
        self.p = [self._party(i, tx) for i in range(2)]
        for p in self.p:
            p.signed[0] = tx.state
        self.net: list[tuple[int, tuple[object, ...]]] = []  # (recipient, message)

    @staticmethod
    def _party(i: int, tx: Transaction) -> Party:
        m = Machine(PARAMS, i, (b"a", b"b"), phase=Phase.ACTING, current=tx)
        return Party(i, m, Disk(Phase.ACTING, tx))

    # --- the protocol discipline --------------------------------------------------------------

    @rule(who=st.integers(0, 1), amount=st.integers(1, 5), final=st.booleans())
    def propose(self, who: int, amount: int, final: bool) -> None:
        p = self.p[who]
        m = p.m
        if m.phase != Phase.ACTING or m.staging is not None or m.needs_sync:
            return
        cur = m.current
        assert cur is not None
        if cur.state.balances[0][who] < amount:
            return
        nxt = cur.state.transfer(who, 1 - who, amount)
        nxt = State(CID, m.next_version, nxt.allocation, None, b"", final)
        sigs: list[bytes | None] = [None, None]
        sigs[who] = p.sign(nxt)
        p.write(m.stage(Transaction(nxt, tuple(sigs))))  # persisted before it is sent
        p.own = nxt.version
        self.net.append((1 - who, ("upd", nxt, sigs[who])))

    def _on_update(self, p: Party, state: State, sig: bytes) -> None:
        m = p.m
        peer = 1 - p.idx
        if p.own is not None and m.staging is not None:
            # Collision: both versions burn on our side, our proposal is dropped.
            _, changed = m.discard()
            p.write(changed, m.burn(state.version))
            p.own = None
            self.net.append((peer, ("rej", state.version)))
            return
        if (
            m.phase != Phase.ACTING
            or m.staging is not None
            or m.needs_sync
            or state.version != m.next_version
            or sig != sig_of(peer, state)
        ):
            self.net.append((peer, ("rej", state.version)))
            return
        sigs: list[bytes | None] = [None, None]
        sigs[peer] = sig
        m.stage(Transaction(state, tuple(sigs)))
        mine = p.sign(state)
        m.add_sig(p.idx, mine)
        p.write(m.enable())  # written before the acceptance leaves
        self.net.append((peer, ("acc", state.version, mine)))

    def _on_acc(self, p: Party, version: int, sig: bytes) -> None:
        m = p.m
        st_ = m.staging
        if p.own != version or st_ is None or st_.state.version != version:
            return
        if sig != sig_of(1 - p.idx, st_.state):
            return
        m.add_sig(1 - p.idx, sig)
        p.write(m.enable())
        p.own = None

    def _on_rej(self, p: Party, version: int) -> None:
        if p.own == version and p.m.staging is not None:
            _, changed = p.m.discard()
            p.write(changed)
            p.own = None

    @precondition(lambda self: bool(self.net))
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        i = data.draw(st.integers(0, len(self.net) - 1))
        to, msg = self.net.pop(i)
        p = self.p[to]
        kind = msg[0]
        if kind == "upd":
            self._on_update(p, msg[1], msg[2])  # type: ignore[arg-type]
        elif kind == "acc":
            self._on_acc(p, msg[1], msg[2])  # type: ignore[arg-type]
        else:
            self._on_rej(p, msg[1])  # type: ignore[arg-type]

    @precondition(lambda self: bool(self.net))
    @rule(data=st.data())
    def drop(self, data: st.DataObject) -> None:
        self.net.pop(data.draw(st.integers(0, len(self.net) - 1)))

    @precondition(lambda self: bool(self.net))
    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        self.net.append(self.net[data.draw(st.integers(0, len(self.net) - 1))])

    @rule(who=st.integers(0, 1))
    def crash(self, who: int) -> None:
        """The party's process dies; it comes back from what it wrote."""
        p = self.p[who]
        d = p.disk
        m = Machine(
            PARAMS,
            who,
            (b"a", b"b"),
            phase=d.phase,
            current=d.current,
            staging=d.staging,
            version_floor=d.floor,
            needs_sync=d.needs_sync,
        )
        p.m = m
        p.own = None
        if m.phase == Phase.SIGNING:
            p.write(m.recover_signing())
        self.net = [x for x in self.net if x[0] != who]  # its connection's inbox is gone

    @rule()
    def sync(self) -> None:
        """The network is quiet; both exchange their views (a full sync round)."""
        self.net.clear()
        a, b = self.p
        for me, other in ((a, b), (b, a)):
            theirs = other.m.current
            mine = me.m.current
            assert theirs is not None and mine is not None
            if theirs.state.version > mine.state.version:
                assert theirs.fully_signed
                me.write(*me.m.adopt(theirs))
            elif theirs.state.version == mine.state.version:
                assert theirs.state == mine.state, "diverged"
        for me, other in ((a, b), (b, a)):
            _, changed = me.m.discard()
            me.own = None
            pend = other.m.staging
            floor = max(other.m.version_floor, pend.state.version if pend else -1)
            me.write(changed, me.m.burn(floor), me.m.set_needs_sync(False))
        assert a.m.current == b.m.current
        assert a.m.next_version == b.m.next_version

    # --- invariants ----------------------------------------------------------------------------

    @invariant()
    def written_is_the_record(self) -> None:
        for p in self.p:
            phase, cur, staging, floor, needs = p.m.snapshot()
            d = p.disk
            assert (d.phase, d.current, d.floor, d.needs_sync) == (phase, cur, floor, needs)
            # A staged state we signed is always on disk (a crash must not forget it).
            if staging is not None and staging.sigs[p.idx] is not None:
                assert d.staging is not None and d.staging.state == staging.state

    @invariant()
    def next_version_is_fresh(self) -> None:
        for p in self.p:
            nv = p.m.next_version
            assert all(
                v < nv for v in p.signed if p.m.staging is None or v != p.m.staging.state.version
            )

    @invariant()
    def totals_are_kept(self) -> None:
        for p in self.p:
            cur = p.m.current
            assert cur is not None and sum(cur.state.balances[0]) == 100


TwoParties.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestTwoParties = TwoParties.TestCase
