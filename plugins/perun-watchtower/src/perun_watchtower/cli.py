"""``perun watchtower serve --config tower.toml``: run a watchtower until stopped.

``tower.toml`` is a ``perun.toml`` for the tower's own parts plus its limits::

    [perun]
    backend = "sim"             # the chain the tower watches
    bus = "tcp"                 # where clients reach it (authenticated)
    persister = "leveldb"       # its durable store: "leveldb" or "rocksdb"
    account = "0x…"             # its account: wire identity, pays for refutations

    [perun.sim]
    url = "tcp://127.0.0.1:7545"
    seeds = ["my tower"]

    [perun.tcp]
    listen = ["tcp://127.0.0.1:7100"]

    [perun.leveldb]
    path = "tower.db"

    [watchtower]                # TowerConfig (all optional)
    max_channels_per_client = 10000

Once it serves, it prints one JSON line ``{"ready": true, "address", "endpoint", "pid",
"restored"}`` on stdout (for scripts and tests); SIGTERM or Ctrl-C stop it cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tomllib
from pathlib import Path
from typing import Any

HELP = "run a remote watchtower service (perun watchtower serve --config tower.toml)"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``serve`` and its options."""
    sub = parser.add_subparsers(dest="tower_cmd", required=True)
    serve = sub.add_parser("serve", help="serve until stopped")
    serve.add_argument("--config", required=True, help="the tower's TOML configuration")


def run(args: argparse.Namespace) -> int:
    """Run ``perun watchtower serve``."""
    if args.tower_cmd != "serve":  # pragma: no cover - argparse requires a known command
        return 2
    return asyncio.run(serve(Path(args.config)))


def load_tower_config(path: Path) -> tuple[dict[str, Any], Any]:
    """The parsed document and its ``[watchtower]`` table as a :class:`TowerConfig`.

    Raises:
        ConfigError: the file cannot be read or a value is invalid.
    """
    from perun_core.errors import ConfigError
    from perun_core.parts import load_config
    from perun_watchtower.config import TowerConfig

    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: {e}") from e
    return doc, load_config(TowerConfig, doc.get("watchtower"), f"{path} [watchtower]")


async def serve(path: Path, *, stop: asyncio.Event | None = None) -> int:
    """Serve the tower ``path`` configures until ``stop`` is set or a signal arrives."""
    from perun_core.configfile import build_parts
    from perun_core.errors import ConfigError, PerunError
    from perun_core.persistence.kv_persister import KVPersister
    from perun_watchtower.service import Watchtower

    try:
        doc, config = load_tower_config(path)
        parts = await build_parts(doc)
    except PerunError as e:
        print(json.dumps({"ready": False, "error": f"{type(e).__name__}: {e}"}), flush=True)
        return 2
    try:
        persister = parts.persister
        if not isinstance(persister, KVPersister) or not getattr(persister, "durable", False):
            raise ConfigError(
                f'{path}: the tower needs a durable store (persister = "leveldb" or '
                f'"rocksdb"), not {type(persister).__name__}'
            )
        tower = Watchtower(
            backend=parts.backend,
            account=parts.account,
            bus=parts.bus,
            store=persister.store,
            config=config,
        )
        async with tower:
            endpoints = parts.bus.advertised_endpoints()
            print(
                json.dumps(
                    {
                        "ready": True,
                        "address": tower.address.hex(),
                        "endpoint": str(endpoints[0]) if endpoints else None,
                        "pid": os.getpid(),
                        "restored": tower.stats.restored,
                        "restore_seconds": tower.stats.restore_seconds,
                    }
                ),
                flush=True,
            )
            done = stop if stop is not None else asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, done.set)
            await done.wait()
    except PerunError as e:
        print(json.dumps({"ready": False, "error": f"{type(e).__name__}: {e}"}), flush=True)
        return 2
    finally:
        # The tower closed its store; the bus and the backend are closed here.
        for part in reversed(parts.owned):
            if part is not parts.persister:
                await part.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m perun_watchtower serve --config tower.toml``."""
    parser = argparse.ArgumentParser(prog="python -m perun_watchtower", description=HELP)
    configure(parser)
    return run(parser.parse_args(argv if argv is not None else sys.argv[1:]))
