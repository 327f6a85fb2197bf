"""Helpers shared by the perun-sim tests (imported by conftest and test modules)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from perun_sim import SimAccount, SimBackend

from perun_core.channel import Allocation, Asset, Params, SignedState, State, SubAlloc

START = 1_000_000
D = 60  # challenge duration of the test channels


@dataclass
class Chan:
    """A channel under test: params, the participants' accounts and state builders."""

    backend: SimBackend
    params: Params
    accounts: Sequence[SimAccount]
    assets: tuple[Asset, ...]

    @property
    def id(self) -> bytes:
        return self.params.id

    def state(
        self,
        version: int,
        balances: Sequence[Sequence[int]],
        *,
        final: bool = False,
        locked: Sequence[SubAlloc] = (),
        data: bytes = b"",
    ) -> State:
        return State(
            channel_id=self.id,
            version=version,
            allocation=Allocation(self.assets, balances, tuple(locked)),
            app=self.params.app,
            data=data,
            is_final=final,
        )

    def sign(self, state: State) -> tuple[bytes, ...]:
        return tuple(self.backend.sign_state(a, state) for a in self.accounts)

    def signed(self, state: State) -> SignedState:
        return SignedState(self.params, state, self.sign(state))
