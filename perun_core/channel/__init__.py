"""The channel data model: params, states, allocations, phases, apps and validation."""

from perun_core.channel.allocation import Allocation, Balances, SubAlloc
from perun_core.channel.app import App, AppRegistry, PaymentApp
from perun_core.channel.params import Params, make_params, nonce_from_shares
from perun_core.channel.phase import Phase
from perun_core.channel.state import SignedState, State, Transaction
from perun_core.channel.types import Address, Asset

__all__ = [
    "Address",
    "Allocation",
    "App",
    "AppRegistry",
    "Asset",
    "Balances",
    "Params",
    "PaymentApp",
    "Phase",
    "SignedState",
    "State",
    "SubAlloc",
    "Transaction",
    "make_params",
    "nonce_from_shares",
]
