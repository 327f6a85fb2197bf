"""``perun eth deploy`` and ``perun eth validate`` on a real anvil (this module's own node).

Scenarios: a developer deploys to anvil with ``--dev`` and hands the written record to
``EthBackend.from_config``; an operator deploys with a key from the environment (as a real
``perun`` subprocess) or from a keystore; then each thing that goes wrong — an unreachable
node, a wrong password, an existing output file, a bad address, a deployer without ETH, a
deployment failing half-way — is one line on stderr, exit status 2, and no file written;
``validate`` says OK or FAIL (exit 1) with the reason.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import rlp  # type: ignore[import-untyped]
from eth_utils.address import to_checksum_address
from perun_eth import bindings as b
from perun_eth.backend import EthBackend
from perun_eth.deploy import DeploymentRecord
from perun_eth.encoding import keccak256
from perun_eth.testing import AnvilNode, free_port
from perun_eth.wallet import EthAccount, EthWallet

from perun_core.channel.params import Params
from perun_core.cli import main

CONTRACTS = ["Adjudicator", "AssetHolderETH", "PerunToken", "AssetHolderERC20", "TrivialApp"]


@pytest.fixture(autouse=True)
def only_eth(monkeypatch: pytest.MonkeyPatch) -> None:
    """``perun`` loads only the eth plugin (besides the built-ins)."""
    monkeypatch.setenv("PERUN_PLUGINS", "eth")
    monkeypatch.delenv("PERUN_DISABLE_PLUGINS", raising=False)


def funded(node: AnvilNode, seed: str) -> EthAccount:
    """A fresh account (key = keccak256(seed)) with 100 ETH."""
    acct = EthWallet().add_seed(seed)
    node.set_balance(acct.checksum_address, 10**20)
    return acct


def nonce_of(node: AnvilNode, acct: EthAccount) -> int:
    return int(node.call("eth_getTransactionCount", acct.checksum_address, "latest"), 16)


def fails(argv: list[str], capsys: pytest.CaptureFixture[str], needle: str) -> str:
    """Run ``perun argv``: exit status 2, nothing on stdout, one error line containing
    ``needle``; returns that line."""
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("perun: error: ") and err.count("\n") == 1, err
    assert needle in err, err
    return err


# --- deploying ---------------------------------------------------------------------------------


async def test_dev_deploy_writes_a_record_the_backend_uses(
    module_anvil: AnvilNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "deployment.json"
    assert main(["eth", "deploy", "--rpc", module_anvil.url, "--dev", "--out", str(out_file)]) == 0
    out = capsys.readouterr().out
    record = DeploymentRecord.load(out_file)
    assert record.chain_id == module_anvil.chain_id
    # Every contract's address, transaction and gas are printed, as the record has them.
    for name in [*CONTRACTS, "PaymentApp"]:
        tx = record.transactions[name]
        line = re.search(rf"^  {name}\s+(0x\w{{40}})  tx (0x\w{{64}})  gas ([\d,]+)$", out, re.M)
        assert line is not None, out
        assert line.groups() == (tx["address"], tx["tx"], f"{tx['gas']:,}")
        receipt = module_anvil.call("eth_getTransactionReceipt", tx["tx"])
        assert int(receipt["status"], 16) == 1
        assert to_checksum_address(receipt["contractAddress"]) == tx["address"]
    printed = json.loads(out[out.index("{") :])
    assert printed == {"rpc": module_anvil.url, "deployment": str(out_file)}

    backend = EthBackend.from_config({**printed, "poll_interval": 0.02})
    try:
        a, c = EthWallet().new_account(), EthWallet().new_account()
        params = Params(
            challenge_duration=60, participants=(a.address, c.address), nonce=7, backend="eth"
        )
        on_chain = await backend.node.call(record.adjudicator, b.channel_id_data(params))
        assert on_chain == backend.channel_id(params)
        assert [x.holder.hex() for x in backend.default_assets()] == [
            record.asset_holder_eth[2:].lower(),
            str(record.asset_holder_erc20)[2:].lower(),
        ]
        # --dev minted the tokens to the node's first account, which the dev faucet uses.
        token = backend.asset(str(record.asset_holder_erc20))
        await backend.faucet(a.address, token, 5)
        assert await backend.balance_of(a.address, token) == 5
    finally:
        await backend.close()

    assert main(["eth", "validate", "--rpc", module_anvil.url, "--deployment", str(out_file)]) == 0
    assert capsys.readouterr().out.startswith(f"OK: adjudicator {record.adjudicator} and 2 asset")
    argv = ["eth", "validate", "--rpc", module_anvil.url, "--deployment", str(out_file), "--strict"]
    assert main(argv) == 0
    assert "strict: our bytecode" in capsys.readouterr().out


def test_deploy_as_a_perun_subprocess_with_a_key_from_the_environment(
    module_anvil: AnvilNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deployer = funded(module_anvil, "test_cli/subprocess")
    holder = EthWallet().new_account().checksum_address
    out_file = tmp_path / "d.json"
    perun = Path(sys.executable).parent / "perun"
    cmd = [str(perun)] if perun.exists() else [sys.executable, "-m", "perun_core.cli"]
    env = {**os.environ, "DEPLOYER_KEY": "0x" + deployer.private_key.secret.hex()}
    argv = ["eth", "deploy", "--rpc", module_anvil.url, "--key-env", "DEPLOYER_KEY"]
    argv += ["--token-holder", holder.lower(), "--out", str(out_file)]
    proc = subprocess.run(
        cmd + argv, capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert f"deployed by {deployer.checksum_address} on chain 31337" in proc.stdout
    assert f"PerunTokens minted to: {holder}" in proc.stdout
    assert deployer.private_key.secret.hex() not in proc.stdout + proc.stderr
    record = DeploymentRecord.load(out_file)
    assert nonce_of(module_anvil, deployer) == 6  # one transaction per contract
    assert main(["eth", "validate", "--rpc", module_anvil.url, "--deployment", str(out_file)]) == 0
    assert capsys.readouterr().out.startswith("OK:")
    assert record.token is not None


def test_deploy_without_token_prints_the_full_backend_config(
    module_anvil: AnvilNode, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    deployer = funded(module_anvil, "test_cli/no-token")
    monkeypatch.setenv("K", deployer.private_key.secret.hex())
    assert main(["eth", "deploy", "--rpc", module_anvil.url, "--key-env", "K", "--no-token"]) == 0
    out = capsys.readouterr().out
    config = json.loads(out[out.index("{") :])
    assert set(config) == {"rpc", "chain_id", "adjudicator", "assets", "from_block"}
    assert "PerunToken" not in out and len(config["assets"]) == 1
    backend = EthBackend.from_config(config)  # usable as printed
    assert backend.chain.adjudicator_hex == config["adjudicator"]


def test_deploy_with_a_keystore_and_a_wrong_password(
    module_anvil: AnvilNode,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = EthWallet()
    deployer = w.add_seed("test_cli/keystore")
    module_anvil.set_balance(deployer.checksum_address, 10**20)
    ks = w.save_keystore(
        deployer.address, tmp_path / "ks.json", "right", kdf="pbkdf2", iterations=2
    )
    out_file = tmp_path / "d.json"
    base = ["eth", "deploy", "--rpc", module_anvil.url, "--keystore", str(ks), "--no-token"]
    base += ["--out", str(out_file)]

    monkeypatch.setenv("PW", "wrong")
    fails([*base, "--password-env", "PW"], capsys, "cannot decrypt keystore")
    # No password source and no terminal to ask on (pytest's stdin is not a tty).
    fails(base, capsys, "use --password-env")
    fails([*base, "--password-env", "UNSET_PW_VAR"], capsys, "UNSET_PW_VAR is not set")
    missing = ["eth", "deploy", "--rpc", module_anvil.url, "--keystore", str(tmp_path / "no")]
    fails([*missing, "--password-env", "PW"], capsys, "cannot read keystore")
    assert not out_file.exists() and nonce_of(module_anvil, deployer) == 0

    monkeypatch.setenv("PW", "right")
    assert main([*base, "--password-env", "PW"]) == 0
    assert f"deployed by {deployer.checksum_address}" in capsys.readouterr().out
    assert DeploymentRecord.load(out_file).token is None


def test_an_existing_out_file_is_kept_unless_forced(
    module_anvil: AnvilNode,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deployer = funded(module_anvil, "test_cli/force")
    monkeypatch.setenv("K", deployer.private_key.secret.hex())
    out_file = tmp_path / "d.json"
    out_file.write_text("precious")
    argv = ["eth", "deploy", "--rpc", module_anvil.url, "--key-env", "K", "--no-token"]
    argv += ["--out", str(out_file)]
    fails(argv, capsys, "exists; pass --force to overwrite it")
    assert out_file.read_text() == "precious"
    assert nonce_of(module_anvil, deployer) == 0  # refused before spending gas
    assert main([*argv, "--force"]) == 0
    capsys.readouterr()
    assert DeploymentRecord.load(out_file).chain_id == module_anvil.chain_id
    assert [p.name for p in tmp_path.iterdir()] == ["d.json"]  # no temporary file left


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--token-holder", "0x1234"], "--token-holder '0x1234' is not a 20-byte hex address"),
        (["--no-token", "--token-holder", "0x" + "11" * 20], "makes no sense with --no-token"),
        (["--confirmations", "0"], "--confirmations must be at least 1"),
        (["--out", "/nonexistent-dir/d.json"], "directory /nonexistent-dir does not exist"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_sent(
    module_anvil: AnvilNode,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
    needle: str,
) -> None:
    deployer = funded(module_anvil, "test_cli/bad-args")
    monkeypatch.setenv("K", deployer.private_key.secret.hex())
    fails(["eth", "deploy", "--rpc", module_anvil.url, "--key-env", "K", *extra], capsys, needle)
    assert nonce_of(module_anvil, deployer) == 0


def test_bad_keys_in_the_environment_are_refused_without_echoing_them(
    module_anvil: AnvilNode, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["eth", "deploy", "--rpc", module_anvil.url, "--key-env", "K"]
    monkeypatch.delenv("K", raising=False)
    fails(argv, capsys, "environment variable K is not set")
    secretish = "0x" + "5e" * 31
    monkeypatch.setenv("K", secretish)
    assert secretish[4:] not in fails(argv, capsys, "K holds no private key")


def test_unreachable_node_and_bad_url(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("K", "ab" * 32)
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    fails(
        ["eth", "deploy", "--rpc", dead, "--key-env", "K"],
        capsys,
        f"cannot reach an Ethereum node at {dead}",
    )
    fails(["eth", "deploy", "--rpc", "ws://x", "--dev"], capsys, "not an http(s):// JSON-RPC URL")


def test_a_deployer_without_eth_is_refused(
    module_anvil: AnvilNode, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    poor = EthWallet().new_account()
    monkeypatch.setenv("K", poor.private_key.secret.hex())
    argv = ["eth", "deploy", "--rpc", module_anvil.url, "--key-env", "K"]
    fails(argv, capsys, f"the deployer {poor.checksum_address} has no ETH on chain 31337")


def test_a_deployment_failing_half_way_writes_nothing_and_names_what_was_mined(
    module_anvil: AnvilNode,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deployer = funded(module_anvil, "test_cli/half-way")
    # Code already sits where the second contract (nonce 1) would be created: it fails.
    blocked = to_checksum_address(keccak256(rlp.encode([deployer.address.raw, 1]))[12:])
    module_anvil.call("anvil_setCode", blocked, "0x00")
    monkeypatch.setenv("K", deployer.private_key.secret.hex())
    out_file = tmp_path / "d.json"
    argv = ["eth", "deploy", "--rpc", module_anvil.url, "--key-env", "K", "--out", str(out_file)]
    err = fails(argv, capsys, "already deployed, no record written: Adjudicator 0x")
    assert "CreateCollision" in err
    assert not out_file.exists() and list(tmp_path.iterdir()) == []


# --- validate ------------------------------------------------------------------------------------


def test_validate_fails_for_a_broken_record(
    module_anvil: AnvilNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.json"
    assert main(["eth", "deploy", "--rpc", module_anvil.url, "--dev", "--out", str(good)]) == 0
    capsys.readouterr()
    record = json.loads(good.read_text())
    eoa_lower = module_anvil.call("eth_accounts")[5]
    eoa = to_checksum_address(eoa_lower)

    def check(name: str, change: dict[str, object], status: int, needle: str) -> None:
        path = tmp_path / name
        path.write_text(json.dumps({**record, **change}))
        argv = ["eth", "validate", "--rpc", module_anvil.url, "--deployment", str(path)]
        assert main(argv) == status
        out, err = capsys.readouterr()
        if status == 0:
            assert out.startswith("OK: ") and err == ""
        else:
            assert out == "" and err.count("\n") == 1 and needle in err, err

    check(
        "eoa.json",
        {"adjudicator": eoa_lower},
        1,
        f"FAIL: no contract code at the adjudicator {eoa}",
    )
    check(
        "swapped.json",
        {"token": record["asset_holder_eth"]},
        1,
        f"FAIL: the asset holder {record['asset_holder_erc20']} keeps token {record['token']}",
    )
    check(
        "chain.json", {"chain_id": 5}, 1, "FAIL: configured for chain 5, but the node serves chain"
    )
    check(
        "app.json",
        {"payment_app": eoa_lower},
        1,
        f"FAIL: no contract code at the payment app {eoa}",
    )
    check("addr.json", {"adjudicator": "0x12"}, 2, "adjudicator '0x12' is not a 20-byte hex")
    check("no-token.json", {"token": None}, 2, "names an ERC-20 holder but no token")
    # A hand-edited record in lower case is as good as the checksummed one.
    lower = {k: v.lower() if isinstance(v, str) else v for k, v in record.items()}
    check("lower.json", lower, 0, "")
    argv = ["eth", "validate", "--rpc", module_anvil.url, "--deployment", str(tmp_path / "no")]
    fails(argv, capsys, "cannot read deployment file")


def test_perun_help_lists_the_eth_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert re.search(
        r"^\s+eth\s+Ethereum: deploy the Perun contracts", capsys.readouterr().out, re.M
    )
    with pytest.raises(SystemExit) as info:
        main(["eth"])  # an action is required
    assert info.value.code == 2
    assert "{deploy,validate}" in capsys.readouterr().err
