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
(``perun-sim serve``, :class:`perun_sim.server.LedgerServer`), each through
``SimBackend.from_config({"url": "tcp://127.0.0.1:PORT"})``.

Scheme, encodings and the served mode: ``docs/sim.md``.
"""

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
from perun_sim.rpc import ClockRangeError, LedgerAuthError, LedgerConnectionError, LedgerURLError
from perun_sim.wallet import SimAccount, SimWallet

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
