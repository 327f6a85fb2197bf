"""``perun eth``: deploy the Perun contracts and check a deployment, from the command line.

Registered as the ``eth`` command of ``perun`` through the ``perun_register_commands`` hook::

    perun eth deploy --rpc http://127.0.0.1:8545 --dev --out deployment.json
    perun eth deploy --rpc URL --keystore key.json --password-env PW --no-token
    perun eth validate --rpc URL --deployment deployment.json --strict

``deploy`` signs every transaction locally: the key comes from an environment variable
(``--key-env``), an encrypted keystore file (``--keystore``, password from ``--password-env``
or a prompt), or, on anvil only, a fresh throw-away key funded with ``anvil_setBalance``
(``--dev``). It prints each contract's address, transaction and gas, and the backend
configuration to use; ``--out`` writes the deployment record that the backend's
``deployment`` key reads. ``validate`` runs the backend's configuration checks on a
deployment record.

Exit status: 0 success (``validate``: OK), 1 ``validate`` found the deployment unusable
(FAIL), 2 an error (bad argument, unreachable node, wrong password, reverted deployment),
reported as one line on stderr; a failed ``deploy`` writes no file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from perun_core.errors import ChainError, PerunError
from perun_eth.errors import DeploymentError, EthConfigError

if TYPE_CHECKING:
    from perun_eth.wallet import EthAccount

HELP: Final = "Ethereum: deploy the Perun contracts, validate a deployment"

DEV_BALANCE: Final = 10**21
"""Wei given to the throw-away ``--dev`` deployer (1,000 ETH: far more than deploying costs)."""


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``deploy`` and ``validate`` actions to the ``perun eth`` parser."""
    sub = parser.add_subparsers(dest="eth_command", required=True)

    d = sub.add_parser(
        "deploy",
        help="deploy the Adjudicator, the asset holders, the test token and the apps",
        description="Deploy the Perun contracts, signing locally with one key.",
    )
    d.add_argument("--rpc", required=True, metavar="URL", help="the node's http(s) JSON-RPC URL")
    key = d.add_mutually_exclusive_group(required=True)
    key.add_argument("--key-env", metavar="VAR", help="env variable holding a hex private key")
    key.add_argument("--keystore", metavar="PATH", help="an encrypted JSON keystore file")
    key.add_argument(
        "--dev",
        action="store_true",
        help="anvil only: deploy from a fresh key funded with anvil_setBalance",
    )
    d.add_argument(
        "--password-env", metavar="VAR", help="env variable holding the keystore password"
    )
    d.add_argument(
        "--no-token", action="store_true", help="deploy only the Adjudicator and the ETH holder"
    )
    d.add_argument(
        "--token-holder",
        action="append",
        default=[],
        metavar="ADDR",
        help="account minted test tokens (repeatable; default: the deployer, with --dev the "
        "node's first account, which the backend's dev faucet sends tokens from)",
    )
    d.add_argument("--out", metavar="FILE", help="write the deployment record (JSON) here")
    d.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    d.add_argument(
        "--confirmations", type=int, default=1, metavar="N", help="blocks per receipt (default 1)"
    )

    v = sub.add_parser(
        "validate",
        help="check that a deployment behaves as the Perun contracts",
        description="Check a deployment record against the node: code present, channelID and "
        "hashState encode as ours, holders wired to the adjudicator and the token.",
    )
    v.add_argument("--rpc", required=True, metavar="URL", help="the node's http(s) JSON-RPC URL")
    v.add_argument("--deployment", required=True, metavar="FILE", help="a deployment record")
    v.add_argument(
        "--strict", action="store_true", help="also require our artifacts' runtime bytecode"
    )


async def run(args: argparse.Namespace) -> int:
    """Run ``perun eth <action>`` with the parsed ``args``; return the exit status.

    Raises:
        PerunError: (printed by ``perun`` as one line, exit status 2) bad arguments
            (:class:`~perun_eth.errors.EthConfigError`), keystore problems
            (:class:`~perun_eth.errors.KeystoreError`), an unreachable node or a failed
            transaction (:class:`~perun_core.errors.ChainError`).
    """
    if args.eth_command == "deploy":
        return await deploy_command(args)
    return await validate_command(args)


# --- deploy -------------------------------------------------------------------------------------


def _checked_deploy_args(args: argparse.Namespace) -> list[str]:
    """Refuse contradicting options of ``perun eth deploy``; returns the token holders given.

    Raises:
        EthConfigError: an option is malformed or does not fit another.
    """
    from perun_eth.chain import checksum, parse_hex_address

    if not args.rpc.startswith(("http://", "https://")):
        raise EthConfigError(f"--rpc {args.rpc!r} is not an http(s):// JSON-RPC URL")
    if args.no_token and args.token_holder:
        raise EthConfigError("--token-holder makes no sense with --no-token")
    if args.password_env and not args.keystore:
        raise EthConfigError("--password-env goes with --keystore")
    if args.confirmations < 1:
        raise EthConfigError("--confirmations must be at least 1")
    holders = []
    for text in args.token_holder:
        try:
            holders.append(checksum(parse_hex_address(text, "--token-holder")))
        except ValueError as e:
            raise EthConfigError(str(e)) from e
    return holders


async def deploy_command(args: argparse.Namespace) -> int:
    """``perun eth deploy``: see the module docstring."""
    from perun_eth.chain import checksum, parse_hex_address
    from perun_eth.deploy import deploy

    holders = _checked_deploy_args(args)
    out = _check_out(args.out, force=args.force)  # before spending any gas
    account: EthAccount | None = None if args.dev else _load_account(args)
    url = await _reachable(args.rpc)

    from perun_eth.node import EthNode, TxOptions
    from perun_eth.wallet import EthWallet

    node = EthNode(url, TxOptions(confirmations=args.confirmations))
    mined: list[str] = []
    try:
        chain_id = await node.chain_id()
        if args.dev:
            if not await node.is_dev_node():
                raise EthConfigError(
                    f"--dev needs an anvil node; {url} is {await node.client_version()!r}"
                )
            account = EthWallet().new_account()
            await node.request("anvil_setBalance", account.checksum_address, hex(DEV_BALANCE))
            if not holders and not args.no_token:
                first = (await node.request("eth_accounts"))[:1]
                holders = [checksum(parse_hex_address(str(a))) for a in first]
        assert account is not None
        if not holders:
            holders = [account.checksum_address]
        if await node.balance(account.checksum_address) == 0:
            raise ChainError(
                f"the deployer {account.checksum_address} has no ETH on chain {chain_id} to pay "
                "for gas",
                operation="deploy",
            )
        try:
            record = await deploy(
                node,
                account,
                token_holders=() if args.no_token else holders,
                with_token=not args.no_token,
                on_receipt=lambda name, r: mined.append(f"{name} {r.tx_hash}"),
            )
        except PerunError as e:
            raise _partial(e, mined) from e
        except Exception as e:  # web3 / the node refusing in a way not mapped yet
            raise _partial(ChainError(f"{type(e).__name__}: {e}", operation="deploy"), mined) from e
    finally:
        await node.close()

    print(
        f"deployed by {account.checksum_address} on chain {record.chain_id} "
        f"from block {record.block}"
    )
    width = max(len(n) for n in record.transactions)
    for name, tx in record.transactions.items():
        print(f"  {name:<{width}}  {tx['address']}  tx {tx['tx']}  gas {tx['gas']:,}")
    if not args.no_token:
        print(f"  PerunTokens minted to: {', '.join(holders)}")
    config: dict[str, Any] = {"rpc": url}
    if out is not None:
        _write_new(out, record.to_json() + "\n", force=args.force)
        print(f"wrote {out}")
        config["deployment"] = str(out)
    else:
        config.update(record.config())
    print("backend config (EthBackend.from_config):")
    print(json.dumps(config, indent=2))
    return 0


def _partial(e: PerunError, mined: list[str]) -> PerunError:
    """``e``, its message extended with the contracts already deployed (they cost gas and
    exist on chain even though the deployment as a whole failed)."""
    if not mined:
        return e
    text = f"{e} (already deployed, no record written: {', '.join(mined)})"
    return ChainError(text) if isinstance(e, ChainError) else PerunError(text)


async def _reachable(text: str) -> str:
    """``text`` if it is an http(s) URL where a node answers ``eth_chainId``.

    One plain request up front: web3's provider retries connection errors itself and
    :class:`~perun_eth.node.EthNode` retries again, which takes many seconds to report a
    node that is simply not there.
    """
    from perun_eth.backend import fetch_chain_id

    if not text.startswith(("http://", "https://")):
        raise EthConfigError(f"--rpc {text!r} is not an http(s):// JSON-RPC URL")
    await asyncio.to_thread(fetch_chain_id, text)
    return text


def _check_out(path: str | None, *, force: bool) -> Path | None:
    if path is None:
        return None
    out = Path(path)
    if out.is_dir():
        raise EthConfigError(f"--out {out} is a directory")
    if out.exists() and not force:
        raise EthConfigError(f"--out {out} exists; pass --force to overwrite it")
    if not out.parent.is_dir():
        raise EthConfigError(f"--out {out}: directory {out.parent} does not exist")
    return out


def _write_new(out: Path, text: str, *, force: bool) -> None:
    """Write ``text`` to ``out`` whole or not at all (a temporary file moved into place);
    without ``force`` an ``out`` that appeared meanwhile is not replaced."""
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if force:
            os.replace(tmp, out)
        else:
            os.link(tmp, out)  # fails if out exists: no overwrite, even in a race
    except FileExistsError as e:
        raise EthConfigError(f"--out {out} exists; pass --force to overwrite it") from e
    except OSError as e:
        raise EthConfigError(f"cannot write {out}: {e.strerror or e}") from e
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _load_account(args: argparse.Namespace) -> EthAccount:
    """The deployer of ``--key-env`` or ``--keystore`` (never echoing the secret)."""
    from perun_eth.wallet import EthWallet

    wallet = EthWallet()
    if args.key_env:
        key = os.environ.get(args.key_env)
        if not key:
            raise EthConfigError(f"--key-env: environment variable {args.key_env} is not set")
        try:
            return wallet.add_key(key.strip())
        except ValueError as e:
            raise EthConfigError(f"--key-env: {args.key_env} holds no private key ({e})") from e
    if args.password_env:
        password = os.environ.get(args.password_env)
        if password is None:
            raise EthConfigError(
                f"--password-env: environment variable {args.password_env} is not set"
            )
    elif sys.stdin.isatty():
        password = getpass.getpass(f"password of {args.keystore}: ")
    else:
        raise EthConfigError("no terminal to ask for the keystore password; use --password-env")
    return wallet.load_keystore(args.keystore, password)


# --- validate -----------------------------------------------------------------------------------


async def validate_command(args: argparse.Namespace) -> int:
    """``perun eth validate``: print OK (exit 0) or FAIL with the reason (exit 1).

    The checks are the backend's configuration check (:func:`perun_eth.config_check.
    check_chain`), applied to the deployment record.
    """
    from perun_eth.chain import ERC20, ETH, HolderInfo, checksum, parse_hex_address
    from perun_eth.config_check import check_chain
    from perun_eth.deploy import DeploymentRecord
    from perun_eth.node import EthNode

    record = DeploymentRecord.load(args.deployment)

    def address(text: str, what: str) -> bytes:
        try:
            return parse_hex_address(str(text), what)
        except ValueError as e:
            raise DeploymentError(f"{args.deployment}: {e}", operation="validate") from e

    def optional(text: str | None, what: str) -> bytes | None:
        return None if text is None else address(text, what)

    adjudicator = address(record.adjudicator, "adjudicator")
    holders = [HolderInfo(address(record.asset_holder_eth, "asset_holder_eth"), ETH)]
    if record.asset_holder_erc20 is not None:
        if record.token is None:
            raise DeploymentError(
                f"{args.deployment} names an ERC-20 holder but no token", operation="validate"
            )
        holders.append(
            HolderInfo(
                address(record.asset_holder_erc20, "asset_holder_erc20"),
                ERC20,
                address(record.token, "token"),
            )
        )
    apps = {
        "trivial app": optional(record.trivial_app, "trivial_app"),
        "payment app": optional(record.payment_app, "payment_app"),
        **{f"app {name!r}": address(a, f"app {name}") for name, a in record.apps.items()},
    }
    url = await _reachable(args.rpc)
    node = EthNode(url)
    try:
        try:
            chain_id, _ = await check_chain(
                node,
                chain_id=record.chain_id,
                adjudicator=adjudicator,
                holders=holders,
                apps=apps,
                strict=args.strict,
            )
        except DeploymentError as e:
            print(f"FAIL: {e.reason}", file=sys.stderr)
            return 1
    finally:
        await node.close()
    mode = " (strict: our bytecode)" if args.strict else ""
    print(
        f"OK: adjudicator {checksum(adjudicator)} and {len(holders)} asset holder(s) on chain "
        f"{chain_id} behave as the Perun contracts{mode}"
    )
    return 0
