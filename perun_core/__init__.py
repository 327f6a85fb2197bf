"""perun-py: blockchain-agnostic state channels.

Quick start (two parties on the simulated chain, in one process)::

    from perun_core import Client, LedgerChannelProposal, load_plugins
    from perun_core.channel import Allocation

    plugins = load_plugins()
    backend = plugins.chain("sim").from_config({})
    bus = plugins.bus("local")()
    alice_acct, bob_acct = backend.wallet().new_account(), backend.wallet().new_account()
    alice = Client(account=alice_acct, backend=backend, bus=bus,
                   funder=backend.funder(alice_acct), adjudicator=backend.adjudicator(alice_acct))
    ...
    async with alice, bob:
        bob.on_proposal(lambda proposal, responder: responder.accept())
        ch = await alice.propose_channel(LedgerChannelProposal(
            peer=bob.address, allocation=Allocation(assets, [[100, 100]])))
        await ch.send(5)
        await ch.settle()

The README and ``docs/`` hold the full guide; ``perun demo`` (the perun-demo plugin) runs a
complete example.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from perun_core.errors import (
    AlreadyConcludedError,
    ChainConnectionError,
    ChainError,
    ChannelClosedError,
    ChannelFundingError,
    ChannelKindError,
    ConcludedWithOtherStateError,
    DepositError,
    ForceExecutionClosedError,
    FundingTimeoutError,
    InsufficientBalanceError,
    InsufficientHoldingsError,
    InvalidLedgerInputError,
    InvalidProgressError,
    InvalidStateError,
    InvalidTransitionError,
    InvalidUpdateError,
    MissingSubStatesError,
    NotFinalError,
    NotRegisteredError,
    NotSettledError,
    NotSupportedError,
    ParamsMismatchError,
    PayoutFailedError,
    PeerRejectedError,
    PerunError,
    PluginError,
    PluginNotFoundError,
    ProtocolError,
    RefutationClosedError,
    RequestTimedOutError,
    SignatureError,
    SignatureRefusedError,
    StaleStateError,
    StateMismatchError,
    SubChannelMismatchError,
    SubChannelsPresentError,
    TimeoutNotElapsedError,
    UnknownAppError,
    UpdateConflictError,
)
from perun_core.hookspecs import hookimpl
from perun_core.lazy import lazy_exports

if TYPE_CHECKING:
    from perun_core.client import (
        Channel,
        Client,
        ClientConfig,
        LedgerChannelProposal,
        ProposalInfo,
        ProposalResponder,
        UpdateResponder,
    )
    from perun_core.plugins import Plugins, load_plugins
else:
    # Importing ``perun_core`` (every plugin module does, for ``hookimpl``) must stay cheap:
    # the client and the plugin loader are imported on first use of their names.
    __getattr__ = lazy_exports(
        __name__,
        {
            "Channel": "perun_core.client",
            "Client": "perun_core.client",
            "ClientConfig": "perun_core.client",
            "LedgerChannelProposal": "perun_core.client",
            "ProposalInfo": "perun_core.client",
            "ProposalResponder": "perun_core.client",
            "UpdateResponder": "perun_core.client",
            "Plugins": "perun_core.plugins",
            "load_plugins": "perun_core.plugins",
        },
    )

__version__ = "0.1.0"


__all__ = [
    "AlreadyConcludedError",
    "ChainConnectionError",
    "ChainError",
    "Channel",
    "ChannelClosedError",
    "ChannelFundingError",
    "ChannelKindError",
    "Client",
    "ClientConfig",
    "ConcludedWithOtherStateError",
    "DepositError",
    "ForceExecutionClosedError",
    "FundingTimeoutError",
    "InsufficientBalanceError",
    "InsufficientHoldingsError",
    "InvalidLedgerInputError",
    "InvalidProgressError",
    "InvalidStateError",
    "InvalidTransitionError",
    "InvalidUpdateError",
    "LedgerChannelProposal",
    "MissingSubStatesError",
    "NotFinalError",
    "NotRegisteredError",
    "NotSettledError",
    "NotSupportedError",
    "ParamsMismatchError",
    "PayoutFailedError",
    "PeerRejectedError",
    "PerunError",
    "PluginError",
    "PluginNotFoundError",
    "Plugins",
    "ProposalInfo",
    "ProposalResponder",
    "ProtocolError",
    "RefutationClosedError",
    "RequestTimedOutError",
    "SignatureError",
    "SignatureRefusedError",
    "StaleStateError",
    "StateMismatchError",
    "SubChannelMismatchError",
    "SubChannelsPresentError",
    "TimeoutNotElapsedError",
    "UnknownAppError",
    "UpdateConflictError",
    "UpdateResponder",
    "__version__",
    "hookimpl",
    "load_plugins",
]
