"""The interfaces everything chain-, storage-, network- or logging-specific hides behind."""

from perun_core.interfaces.adjudicator import (
    Adjudicator,
    AdjudicatorEvent,
    AdjudicatorReq,
    ChannelEvents,
    ConcludedEvent,
    EventSubscription,
    ProgressedEvent,
    QueuedChannelEvents,
    RegisteredEvent,
    Timeout,
)
from perun_core.interfaces.bus import Bus, Subscription
from perun_core.interfaces.chain import ChainBackend
from perun_core.interfaces.devledger import DevLedger
from perun_core.interfaces.funder import Funder, FundingRequest
from perun_core.interfaces.persister import ChannelRecord, Persister
from perun_core.interfaces.wallet import Account, Wallet

__all__ = [
    "Account",
    "Adjudicator",
    "AdjudicatorEvent",
    "AdjudicatorReq",
    "Bus",
    "ChainBackend",
    "ChannelEvents",
    "ChannelRecord",
    "ConcludedEvent",
    "DevLedger",
    "EventSubscription",
    "Funder",
    "FundingRequest",
    "Persister",
    "ProgressedEvent",
    "QueuedChannelEvents",
    "RegisteredEvent",
    "Subscription",
    "Timeout",
    "Wallet",
]
