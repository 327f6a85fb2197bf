"""The Funder: deposits a party's share of a channel on the ledger (see docs/protocols.md)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from perun_core.channel.allocation import Balances
from perun_core.channel.params import Params
from perun_core.channel.state import State
from perun_core.errors import InvalidFundingAgreementError


@dataclass(frozen=True, slots=True)
class FundingRequest:
    """What a funder needs to fund one participant's share of a channel.

    Attributes:
        params: the channel's params.
        state: the fully signed initial state.
        idx: our participant index.
        agreement: per asset and participant, what each party deposits (default: the
            initial balances).
        egoistic: deposit only after every other participant's deposit is confirmed.
        timeout: seconds of ledger time to wait for all deposits (default: the
            channel's challenge duration).
    """

    params: Params
    state: State
    idx: int
    agreement: Balances
    egoistic: bool = False
    timeout: int | None = None

    def check(self) -> None:
        """Refuse a request no funder can serve (called by funders before any deposit).

        Raises:
            InvalidFundingAgreementError: the agreement does not have one row per asset of
                one entry per participant.
            ValueError: ``idx`` is not a participant index.
        """
        n = self.params.num_parts
        rows = len(self.state.allocation.assets)
        if len(self.agreement) != rows or any(len(row) != n for row in self.agreement):
            raise InvalidFundingAgreementError(
                f"the funding agreement must have {rows} rows of {n} entries",
                channel_id=self.params.id or None,
            )
        if not 0 <= self.idx < n:
            raise ValueError(f"participant index {self.idx} out of range")

    @property
    def deadline_seconds(self) -> int:
        """The funding window in ledger seconds."""
        return self.timeout if self.timeout is not None else self.params.challenge_duration


class Funder(ABC):
    """Deposits funds for channels of one account on one backend's ledger(s)."""

    @abstractmethod
    async def fund(self, request: FundingRequest) -> None:
        """Deposit our share of each asset and wait until every participant has funded.

        Funding is idempotent: a share already on the ledger is not deposited again, so it
        is safe to call again after a restart.

        Raises:
            FundingTimeoutError: not every participant funded within the funding window;
                names the participant indices per asset.
            ChainError: a deposit was refused by the ledger.
        """
