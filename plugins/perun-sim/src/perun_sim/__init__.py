"""perun-sim: an ideal simulated ledger for perun-py.

Real secp256k1 signatures (SHA3-256, no Keccak), a ledger that enforces the same rules and
reason strings as the Ethereum contracts, and a controllable clock, all in-process::

    from perun_sim import SimBackend, SimClock, SimLedger

    backend = SimBackend(SimLedger(clock=SimClock.manual()))   # or from_config({...})
    alice = backend.wallet().add_seed(b"alice")
    eth = backend.default_assets()[0]
    backend.ledger.mint(alice.address, eth, 100)               # a faucet
    funder, adj = backend.funder(alice), backend.adjudicator(alice)
    ...
    backend.clock.advance(60)                                  # skip a challenge duration

Clients in several processes share one ledger served by :mod:`perun_sim.server`
(``perun sim serve``, :class:`perun_sim.server.LedgerServer`), each through
``SimBackend.from_config({"url": "tcp://127.0.0.1:PORT"})``.

Scheme, encodings and the served mode: ``docs/sim.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from perun_core.lazy import lazy_exports

if TYPE_CHECKING:
    from perun_sim.adjudicator import SimAdjudicator
    from perun_sim.api import LedgerAPI, LocalLedger
    from perun_sim.backend import SimBackend
    from perun_sim.clock import SimClock, SimTimeout
    from perun_sim.crypto import SimSignatureFormatError
    from perun_sim.encoding import PAYMENT_APP_ID
    from perun_sim.funder import SimFunder
    from perun_sim.ledger import (
        Dispute,
        DisputePhase,
        SimEventSubscription,
        SimLedger,
        WithdrawalAuth,
    )
    from perun_sim.remote import RemoteLedger, RemoteTimeout
    from perun_sim.rpc import (
        ClockRangeError,
        LedgerAuthError,
        LedgerConnectionError,
        LedgerURLError,
    )
    from perun_sim.wallet import SimAccount, SimWallet
else:
    # Loading the plugin imports this package: its modules are imported on first use.
    __getattr__ = lazy_exports(
        __name__,
        {
            "ClockRangeError": "perun_sim.rpc",
            "Dispute": "perun_sim.ledger",
            "DisputePhase": "perun_sim.ledger",
            "LedgerAPI": "perun_sim.api",
            "LedgerAuthError": "perun_sim.rpc",
            "LedgerConnectionError": "perun_sim.rpc",
            "LedgerURLError": "perun_sim.rpc",
            "LocalLedger": "perun_sim.api",
            "PAYMENT_APP_ID": "perun_sim.encoding",
            "RemoteLedger": "perun_sim.remote",
            "RemoteTimeout": "perun_sim.remote",
            "SimAccount": "perun_sim.wallet",
            "SimAdjudicator": "perun_sim.adjudicator",
            "SimBackend": "perun_sim.backend",
            "SimClock": "perun_sim.clock",
            "SimEventSubscription": "perun_sim.ledger",
            "SimFunder": "perun_sim.funder",
            "SimLedger": "perun_sim.ledger",
            "SimSignatureFormatError": "perun_sim.crypto",
            "SimTimeout": "perun_sim.clock",
            "SimWallet": "perun_sim.wallet",
            "WithdrawalAuth": "perun_sim.ledger",
        },
    )

__all__ = [
    "PAYMENT_APP_ID",
    "ClockRangeError",
    "Dispute",
    "DisputePhase",
    "LedgerAPI",
    "LedgerAuthError",
    "LedgerConnectionError",
    "LedgerURLError",
    "LocalLedger",
    "RemoteLedger",
    "RemoteTimeout",
    "SimAccount",
    "SimAdjudicator",
    "SimBackend",
    "SimClock",
    "SimEventSubscription",
    "SimFunder",
    "SimLedger",
    "SimSignatureFormatError",
    "SimTimeout",
    "SimWallet",
    "WithdrawalAuth",
]
