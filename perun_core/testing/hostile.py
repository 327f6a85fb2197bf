"""Mallory's catalogue of invalid and hostile messages against an honest peer's channel.

Each entry builds one envelope from Mallory (or from Eve, a stranger) to Alice, given the
channel as Mallory holds it. None of them may change Alice's channel, raise anything but a
typed error inside her client, or keep her from paying and settling afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace

from perun_core.channel.allocation import Allocation, SubAlloc
from perun_core.channel.state import State, Transaction
from perun_core.channel.types import Address
from perun_core.interfaces.chain import ChainBackend
from perun_core.interfaces.wallet import Account
from perun_core.wire import messages as wire


@dataclass
class Stage:
    """What a hostile message is built from."""

    backend: ChainBackend
    mallory: Account  # her wallet account (she signs with it)
    mallory_addr: Address  # her wire address
    alice_addr: Address
    eve: Account  # a stranger's account
    tx: Transaction  # the channel's current fully signed transaction (Mallory's copy)
    old: Transaction  # an older fully signed transaction of the channel
    m_idx: int  # Mallory's participant index

    @property
    def state(self) -> State:
        """The current state."""
        return self.tx.state

    @property
    def a_idx(self) -> int:
        """Alice's participant index."""
        return 1 - self.m_idx

    def sign(self, st: State, by: Account | None = None) -> bytes:
        """A signature on ``st`` (Mallory's by default)."""
        return self.backend.sign_state(by or self.mallory, st)

    def env(self, msg: wire.Message, sender: Address | None = None) -> wire.Envelope:
        """An envelope from Mallory (or ``sender``) to Alice."""
        return wire.Envelope(sender or self.mallory_addr, self.alice_addr, msg)

    def nxt(self, **changes: object) -> State:
        """The next state (version + 1), with ``changes``."""
        return replace(self.state, version=self.state.version + 1, **changes)  # type: ignore[arg-type]

    def pay(self, amount: int, frm: int | None = None) -> State:
        """The next state with ``amount`` moved from ``frm`` (Mallory) to the other."""
        f = self.m_idx if frm is None else frm
        bal = [list(r) for r in self.state.balances]
        bal[0][f] -= amount
        bal[0][1 - f] += amount
        alloc = Allocation(self.state.allocation.assets, tuple(tuple(r) for r in bal))
        return self.nxt(allocation=alloc)

    def update(
        self, st: State, sig: bytes | None = None, actor: int | None = None
    ) -> wire.Envelope:
        """A ``ChannelUpdate`` of ``st`` signed by Mallory (or with ``sig``)."""
        return self.env(
            wire.ChannelUpdate(st, self.m_idx if actor is None else actor, sig or self.sign(st))
        )

    def sync(self, **kw: object) -> wire.Envelope:
        """A ``ChannelSync`` request built from Mallory's view, with fields replaced."""
        base = wire.ChannelSync(self.state.channel_id, 3, self.tx, None, 0)
        return self.env(replace(base, **kw))  # type: ignore[arg-type]

    def proposal(self, **kw: object) -> wire.Envelope:
        """A channel proposal from Mallory to Alice, with fields replaced."""
        base = wire.LedgerChannelProposal(
            proposal_id=os.urandom(32),
            backend=self.backend.name,
            challenge_duration=60,
            nonce_share=os.urandom(32),
            app=None,
            init_data=b"",
            init_alloc=Allocation(self.state.allocation.assets, ((10, 10),)),
            funding_agreement=None,
            aux=b"",
            participant=self.mallory.address,
            peers=(self.mallory_addr, self.alice_addr),
        )
        return self.env(replace(base, **kw))  # type: ignore[arg-type]


Builder = Callable[[Stage], list[wire.Envelope]]


def _k(fn: Callable[[Stage], wire.Envelope | list[wire.Envelope]]) -> Builder:
    def build(s: Stage) -> list[wire.Envelope]:
        out = fn(s)
        return out if isinstance(out, list) else [out]

    build.__name__ = fn.__name__
    return build


def _cid(s: Stage) -> bytes:
    return s.state.channel_id


HOSTILE: dict[str, Builder] = {
    # --- updates -------------------------------------------------------------------------------
    "update_bad_signature": _k(lambda s: s.update(s.pay(1), s.sign(s.pay(1), s.eve))),
    "update_signature_garbage": _k(lambda s: s.update(s.pay(1), b"\x01" * 65)),
    "update_signature_short": _k(lambda s: s.update(s.pay(1), b"\x01\x02")),
    "update_version_skip": _k(lambda s: s.update(replace(s.pay(1), version=s.state.version + 5))),
    "update_version_replay": _k(lambda s: s.update(replace(s.pay(1), version=s.old.state.version))),
    "update_same_version": _k(lambda s: s.update(replace(s.pay(1), version=s.state.version))),
    "update_version_max": _k(lambda s: s.update(replace(s.pay(1), version=2**64 - 1))),
    "update_overspend": _k(lambda s: s.update(s.pay(s.state.balances[0][s.m_idx] + 1))),
    "update_takes_alice_funds": _k(lambda s: s.update(s.pay(1, frm=s.a_idx))),
    "update_final_takes_alice_funds": _k(
        lambda s: s.update(replace(s.pay(1, frm=s.a_idx), is_final=True))
    ),
    "update_overflow": _k(
        lambda s: s.update(
            s.nxt(allocation=Allocation(s.state.allocation.assets, ((2**256, 2**256),)))
        )
    ),
    "update_mints_money": _k(
        lambda s: s.update(
            s.nxt(
                allocation=Allocation(
                    s.state.allocation.assets,
                    tuple(tuple(x + 5 for x in r) for r in s.state.balances),
                )
            )
        )
    ),
    "update_changes_assets": _k(
        lambda s: s.update(
            s.nxt(
                allocation=Allocation(
                    (*s.state.allocation.assets, s.state.allocation.assets[0]),
                    (*s.state.balances, (0, 0)),
                )
            )
        )
    ),
    "update_other_channel": _k(lambda s: s.update(replace(s.pay(1), channel_id=os.urandom(32)))),
    "update_impersonates_alice": _k(lambda s: s.update(s.pay(1, frm=s.a_idx), actor=s.a_idx)),
    "update_actor_out_of_range": _k(lambda s: s.update(s.pay(1), actor=7)),
    "update_changes_app": _k(lambda s: s.update(s.nxt(app=b"\x42" * 20))),
    "update_data_without_app": _k(lambda s: s.update(s.nxt(data=b"junk"))),
    "update_locks_funds": _k(
        lambda s: s.update(
            s.nxt(
                allocation=replace(
                    s.state.allocation,
                    locked=(SubAlloc(os.urandom(32), (1,), (0, 1)),),
                )
            )
        )
    ),
    "update_from_stranger": _k(
        lambda s: s.env(
            wire.ChannelUpdate(s.pay(1), s.m_idx, s.sign(s.pay(1), s.eve)), sender=s.eve.address
        )
    ),
    "update_flood": _k(lambda s: [s.update(s.pay(1, frm=s.a_idx)) for _ in range(30)]),
    # --- acceptances and rejections ------------------------------------------------------------
    "acc_unsolicited": _k(
        lambda s: s.env(wire.ChannelUpdateAcc(_cid(s), s.state.version + 1, s.sign(s.pay(1))))
    ),
    "acc_old_version": _k(
        lambda s: s.env(wire.ChannelUpdateAcc(_cid(s), s.old.state.version, s.sign(s.old.state)))
    ),
    "acc_garbage_signature": _k(
        lambda s: s.env(wire.ChannelUpdateAcc(_cid(s), s.state.version + 1, b"\x00" * 3))
    ),
    "acc_unknown_channel": _k(
        lambda s: s.env(wire.ChannelUpdateAcc(os.urandom(32), 1, b"\x00" * 65))
    ),
    "acc_version_zero": _k(lambda s: s.env(wire.ChannelUpdateAcc(_cid(s), 0, s.sign(s.old.state)))),
    "rej_unsolicited": _k(
        lambda s: s.env(wire.ChannelUpdateRej(_cid(s), s.state.version + 1, 1, "no"))
    ),
    "rej_unknown_code": _k(
        lambda s: s.env(wire.ChannelUpdateRej(_cid(s), s.state.version + 1, 200, "?"))
    ),
    "rej_long_reason": _k(
        lambda s: s.env(wire.ChannelUpdateRej(_cid(s), s.state.version + 1, 1, "x" * 1000))
    ),
    # --- sync ----------------------------------------------------------------------------------
    "sync_floor_max": _k(lambda s: s.sync(version_floor=2**64 - 1)),
    "sync_forged_newer_state": _k(
        lambda s: s.sync(current=Transaction(s.pay(3, frm=s.a_idx), (b"\x01" * 65, b"\x02" * 65)))
    ),
    "sync_half_signed_newer": _k(
        lambda s: s.sync(
            current=Transaction(
                s.pay(3, frm=s.a_idx),
                tuple(s.sign(s.pay(3, frm=s.a_idx)) if i == s.m_idx else None for i in range(2)),
            )
        )
    ),
    "sync_pending_max_version": _k(
        lambda s: s.sync(
            pending=Transaction(
                replace(s.pay(1), version=2**63),
                tuple(
                    s.sign(replace(s.pay(1), version=2**63)) if i == s.m_idx else None
                    for i in range(2)
                ),
            )
        )
    ),
    "sync_other_channel": _k(
        lambda s: s.sync(
            current=Transaction(replace(s.state, channel_id=os.urandom(32)), s.tx.sigs)
        )
    ),
    "sync_unsolicited_reply": _k(lambda s: s.sync(reply=True)),
    "sync_flood": _k(lambda s: [s.sync() for _ in range(40)]),
    "sync_garbage_phase": _k(lambda s: s.sync(phase=255)),
    "sync_stale_current": _k(lambda s: s.sync(current=s.old)),
    "sync_diverging_state": _k(
        lambda s: s.sync(
            current=Transaction(
                replace(s.pay(2, frm=s.a_idx), version=s.state.version),
                (s.sign(s.state), s.sign(s.state)),
            )
        )
    ),
    "sync_unknown_channel": _k(lambda s: s.sync(channel_id=os.urandom(32))),
    "sync_from_stranger": _k(
        lambda s: s.env(wire.ChannelSync(_cid(s), 3, s.tx, None, 2**40), sender=s.eve.address)
    ),
    # --- proposals -----------------------------------------------------------------------------
    "proposal_bad_challenge": _k(lambda s: s.proposal(challenge_duration=0)),
    "proposal_foreign_peers": _k(lambda s: s.proposal(peers=(s.mallory_addr, s.eve.address))),
    "proposal_unknown_backend": _k(lambda s: s.proposal(backend="nonexistent")),
    "proposal_bad_agreement": _k(lambda s: s.proposal(funding_agreement=((99, 99),))),
    "proposal_locked_funds": _k(
        lambda s: s.proposal(
            init_alloc=Allocation(
                s.state.allocation.assets, ((10, 10),), (SubAlloc(os.urandom(32), (1,), (0, 1)),)
            )
        )
    ),
    "proposal_replayed": _k(lambda s: (lambda e: [e, e, e])(s.proposal(challenge_duration=0))),
    "proposal_acc_unsolicited": _k(
        lambda s: s.env(
            wire.LedgerChannelProposalAcc(os.urandom(32), os.urandom(32), s.mallory.address, b"x")
        )
    ),
    "proposal_rej_unsolicited": _k(
        lambda s: s.env(wire.ChannelProposalRej(os.urandom(32), 1, "no"))
    ),
    "ping_flood": _k(lambda s: [s.env(wire.Ping(i)) for i in range(50)]),
}
"""Every hostile message kind, by name."""


__all__ = ["HOSTILE", "Builder", "Stage"]
