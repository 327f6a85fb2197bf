"""Run Mallory's adversarial campaign (perun_core.testing.campaign) from the command line.

    python tests/adversarial/campaign.py --runs 2000 --seed 1            # sim ledger
    python tests/adversarial/campaign.py --runs 50 --backend eth         # a fresh anvil
    python tests/adversarial/campaign.py --runs 300 --scenario sub_channel

Prints runs, passed, funds lost, hangs and untyped errors as one JSON object; the exit
status is 0 only when no funds were lost, nothing hung and every error was typed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from perun_core.interfaces.chain import ChainBackend
from perun_core.testing.campaign import Summary, run_campaign, seeds_of


@asynccontextmanager
async def sim_chain() -> AsyncIterator[tuple[ChainBackend, Any]]:
    """A sim ledger with a manual clock."""
    from perun_sim.backend import SimBackend

    b = SimBackend.from_config({"clock": "manual"})
    try:
        yield b, b.default_assets()[0]
    finally:
        await b.close()


@asynccontextmanager
async def eth_chain() -> AsyncIterator[tuple[ChainBackend, Any]]:
    """A fresh anvil with our contracts (its token asset: no gas fees touch it)."""
    from perun_eth.testing import e2e_chain

    async with e2e_chain(Path(".")) as (b, asset):
        yield b, asset


def main(argv: list[str] | None = None) -> int:
    """Run a seeded campaign and print its counts as JSON."""
    ap = argparse.ArgumentParser(prog="tests/adversarial/campaign.py")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1, help="first seed (runs use seed, seed+1, …)")
    ap.add_argument("--backend", choices=("sim", "eth"), default="sim")
    ap.add_argument("--progress", action="store_true", help="counts every 50 runs on stderr")
    ap.add_argument("--scenario", help="only seeds that play this scenario (e.g. sub_channel)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)

    async def go() -> Summary:
        chain = sim_chain() if args.backend == "sim" else eth_chain()
        async with chain as (backend, asset):
            if args.scenario:
                seeds = seeds_of(args.scenario, args.seed, args.runs)
            else:
                seeds = list(range(args.seed, args.seed + args.runs))
            return await run_campaign(backend, asset, seeds, progress=args.progress)

    t0 = time.monotonic()
    summary = asyncio.run(go())
    out: dict[str, Any] = {"backend": args.backend, "seconds": round(time.monotonic() - t0, 1)}
    out.update(summary.as_dict())
    print(json.dumps(out, indent=2))
    ok = summary.funds_lost == 0 and summary.hangs == 0 and summary.untyped_errors == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
