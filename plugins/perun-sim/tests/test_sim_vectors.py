"""The test vector of docs/sim.md: pins the sim encodings, IDs and signatures."""

from __future__ import annotations

from perun_sim import PAYMENT_APP_ID, SimAccount, SimBackend
from perun_sim.encoding import encode_params, encode_state, funding_id, hash_state

from perun_core.channel import Allocation, Asset, State, make_params

PARAMS = (
    "98b3706572756e2d73696d2f706172616d732f76313c92c4145671d0f7bf07d1a9f0aba775c866fe7007ba936d"
    "c4146a6ab2e1b300940e5d1a9d799d6560a4a819f158c404b0b0facec0c3c2c400"
)
STATE = (
    "99b2706572756e2d73696d2f73746174652f7631c4204a5f6d91e38c023ec7b152bd97a29a1dd0fbd90bf238"
    "84f81fb302e191c434f20591c42300000000000000000000000000000000000000000000000000000000000005"
    "394554489192c4080de0b6b3a7640000c4081bc16d674ec8000090c0c400c3"
)
SIG_ALICE = (
    "957050d6b6a3fd13660e9283450da92e8c5f044890d1813643c643369cf8ce72"
    "057c8996d0793f2e9324859253427647c6e7ee78440d74491b51689475ac146801"
)


def test_documented_vector(backend: SimBackend) -> None:
    alice, bob = SimAccount.from_seed(b"alice"), SimAccount.from_seed(b"bob")
    assert alice.secret.hex() == "a7dcef9aef26202fce82a7c7d6672afb3a149db207d90a07e437d5abc7fc99ed"
    assert alice.address.hex() == "0x5671d0f7bf07d1a9f0aba775c866fe7007ba936d"
    assert bob.address.hex() == "0x6a6ab2e1b300940e5d1a9d799d6560a4a819f158"
    params = make_params(
        backend, challenge_duration=60, participants=[alice.address, bob.address], nonce=0xB0B0FACE
    )
    assert encode_params(params).hex() == PARAMS
    assert params.id.hex() == "4a5f6d91e38c023ec7b152bd97a29a1dd0fbd90bf23884f81fb302e191c434f2"
    state = State(
        params.id, 5, Allocation([Asset(1337, b"ETH")], [[10**18, 2 * 10**18]]), is_final=True
    )
    assert encode_state(state).hex() == STATE
    assert hash_state(state).hex() == (
        "e22927cdb798e8adce7f70a461cf63f4bf9aa1626d9084e7e0217587fac5b0ca"
    )
    assert backend.sign_state(alice, state).hex() == SIG_ALICE
    assert funding_id(params.id, alice.address).hex() == (
        "2a7322ea6848c0b3468fee9542892d1cecd7a8028ab028e036a5d43e75dc7057"
    )
    assert PAYMENT_APP_ID.hex() == "cfb693b4d3715a4c39f502db82593ec320f69838"
