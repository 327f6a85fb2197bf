"""The Ethereum wallet: keys in every accepted form, signatures, encrypted keystore files.

Scenarios: an operator loads the test-vector keys and gets the documented addresses; a key
pasted with or without ``0x`` (or as bytes) is the same account; a typo'd key is refused; a
keystore file survives a round trip (pbkdf2 and scrypt), and a wrong password, a missing or a
garbage file each give a KeystoreError; saving never overwrites and leaves an owner-only file.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from coincurve import PrivateKey
from perun_eth.backend import EthBackend
from perun_eth.chain import EthChain
from perun_eth.encoding import eip191_digest, keccak256, recover_digest
from perun_eth.errors import KeystoreError
from perun_eth.node import EthNode
from perun_eth.wallet import EthAccount, EthWallet

from perun_core.channel.types import Address

ALICE_KEY = keccak256(b"perun-acceptance/alice")
BOB_KEY = keccak256(b"perun-acceptance/bob")
ALICE = "0xC325649e8f5aae5ffB4a0fb6e32d97689019210E"  # the encoding test vector
BOB = "0x0BD779D2753029B52d1FEfD26f62B52c104E27c7"
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def save_fast(w: EthWallet, address: Address, path: Path | str, password: str) -> Path:
    """``save_keystore`` with pbkdf2 and a token work factor: these tests need no real one."""
    return w.save_keystore(address, path, password, kdf="pbkdf2", iterations=2)


@pytest.fixture(scope="module")
def backend() -> Iterator[EthBackend]:
    """A backend for its signature checks only, built by hand: no node is contacted
    (``from_config`` would check the configuration against the node first)."""
    node = EthNode("http://127.0.0.1:9")
    yield EthBackend(EthChain(node, bytes.fromhex("11" * 20), chain_id=31337))


# --- keys --------------------------------------------------------------------------------------


def test_acceptance_keys_have_the_documented_addresses() -> None:
    w = EthWallet()
    assert w.add_key(ALICE_KEY).checksum_address == ALICE
    assert w.add_seed("perun-acceptance/bob").checksum_address == BOB
    assert w.add_seed(b"perun-acceptance/alice").checksum_address == ALICE
    assert w.accounts() == [Address(bytes.fromhex(ALICE[2:])), Address(bytes.fromhex(BOB[2:]))]


@pytest.mark.parametrize(
    "form",
    [
        ALICE_KEY,
        "0x" + ALICE_KEY.hex(),
        "0X" + ALICE_KEY.hex().upper(),
        ALICE_KEY.hex(),
        PrivateKey(ALICE_KEY),
    ],
    ids=["bytes", "0x-hex", "0X-HEX", "bare-hex", "coincurve"],
)
def test_every_key_form_is_the_same_account(form: Any) -> None:
    w = EthWallet()
    first = w.add_key(form)
    assert first.checksum_address == ALICE
    assert w.add_key(ALICE_KEY) is first  # held once
    assert len(w.accounts()) == 1


@pytest.mark.parametrize(
    ("key", "needle"),
    [
        ("0x" + "ab" * 31, "32 bytes, got 31"),
        ("ab" * 33, "32 bytes, got 33"),
        ("0xzz" + "00" * 31, "64 hex digits"),
        ("not a key", "64 hex digits"),
        (b"\x01" * 20, "32 bytes, got 20"),
        (bytes(32), "greater than 0"),
        (SECP256K1_N.to_bytes(32, "big"), "less than"),
    ],
    ids=["short", "long", "non-hex", "text", "20-bytes", "zero", "curve-order"],
)
def test_bad_keys_are_refused_with_a_value_error(key: Any, needle: str) -> None:
    w = EthWallet()
    with pytest.raises(ValueError, match=needle):
        w.add_key(key)
    assert w.accounts() == []


def test_new_accounts_are_distinct_and_held() -> None:
    w = EthWallet()
    a, b = w.new_account(), w.new_account()
    assert a.address != b.address
    assert set(w.accounts()) == {a.address, b.address}


async def test_unlock_returns_the_held_account_or_raises() -> None:
    w = EthWallet()
    acct = w.add_key(ALICE_KEY)
    assert await w.unlock(acct.address) is acct
    with pytest.raises(KeyError):
        await w.unlock(Address(bytes.fromhex(BOB[2:])))


# --- signatures --------------------------------------------------------------------------------


def test_sign_verifies_with_the_backend_and_only_for_its_signer(backend: EthBackend) -> None:
    alice = EthAccount(ALICE_KEY)
    bob = EthAccount(BOB_KEY)
    msg = b"withdrawal authorization bytes"
    sig = alice.sign(msg)
    assert len(sig) == 65 and sig[64] in (27, 28)
    assert backend.verify_signature(alice.address, msg, sig)
    assert not backend.verify_signature(bob.address, msg, sig)
    assert not backend.verify_signature(alice.address, msg + b"!", sig)
    # The signature is EIP-191 over keccak256(message): recoverable from that digest.
    assert recover_digest(eip191_digest(keccak256(msg)), sig) == alice.address


def test_sign_digest_signs_the_digest_as_given() -> None:
    alice = EthAccount(ALICE_KEY)
    digest = keccak256(b"some 32-byte digest")
    assert recover_digest(digest, alice.sign_digest(digest)) == alice.address


# --- keystore files ----------------------------------------------------------------------------


def test_keystore_round_trip_pbkdf2(tmp_path: Path) -> None:
    w = EthWallet()
    acct = w.add_key(ALICE_KEY)
    path = save_fast(w, acct.address, tmp_path / "alice.json", "s3cret")
    data = json.loads(path.read_text())
    assert data["crypto"]["kdf"] == "pbkdf2"
    assert ALICE_KEY.hex() not in path.read_text()  # encrypted, not the plain key
    other = EthWallet()
    loaded = other.load_keystore(path, "s3cret")
    assert loaded.checksum_address == ALICE
    assert loaded.private_key.secret == ALICE_KEY
    assert other.accounts() == [acct.address]


def test_keystore_round_trip_scrypt(tmp_path: Path) -> None:
    w = EthWallet()
    acct = w.add_key(BOB_KEY)
    path = w.save_keystore(acct.address, tmp_path / "bob.json", "pw", iterations=2**10)
    assert json.loads(path.read_text())["crypto"]["kdf"] == "scrypt"
    assert EthWallet().load_keystore(str(path), "pw").checksum_address == BOB


def test_keystore_file_is_owner_only(tmp_path: Path) -> None:
    w = EthWallet()
    acct = w.add_key(ALICE_KEY)
    path = save_fast(w, acct.address, tmp_path / "k.json", "pw")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_save_keystore_never_overwrites(tmp_path: Path) -> None:
    w = EthWallet()
    alice, bob = w.add_key(ALICE_KEY), w.add_key(BOB_KEY)
    path = save_fast(w, alice.address, tmp_path / "k.json", "pw")
    before = path.read_bytes()
    with pytest.raises(KeystoreError, match="cannot create keystore"):
        save_fast(w, bob.address, path, "pw")
    assert path.read_bytes() == before
    assert EthWallet().load_keystore(path, "pw").checksum_address == ALICE


def test_save_keystore_of_an_unknown_account_is_a_key_error(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        EthWallet().save_keystore(EthAccount(ALICE_KEY).address, tmp_path / "k.json", "pw")
    assert not (tmp_path / "k.json").exists()


def test_wrong_password_is_a_keystore_error(tmp_path: Path) -> None:
    w = EthWallet()
    acct = w.add_key(ALICE_KEY)
    path = save_fast(w, acct.address, tmp_path / "k.json", "right")
    other = EthWallet()
    with pytest.raises(KeystoreError, match="cannot decrypt keystore"):
        other.load_keystore(path, "wrong")
    assert other.accounts() == []


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "cannot read keystore"),
        ("this is not json {", "is not a JSON keystore file"),
        ("{}", "not a valid keystore file"),
        (json.dumps({"crypto": {"kdf": "rot13"}, "version": 3}), "keystore"),
    ],
    ids=["missing", "garbage", "empty-object", "unknown-kdf"],
)
def test_unusable_keystore_files_are_keystore_errors(
    tmp_path: Path, content: str | None, needle: str
) -> None:
    path = tmp_path / "k.json"
    if content is not None:
        path.write_text(content)
    w = EthWallet()
    with pytest.raises(KeystoreError, match=needle):
        w.load_keystore(path, "pw")
    assert w.accounts() == []
