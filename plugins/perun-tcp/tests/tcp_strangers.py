"""Many authenticated strangers in their own OS process, each holding an unfinished frame.

    python tcp_strangers.py --endpoint tcp://127.0.0.1:PORT --peer HEX --count 300 \
        --size 1048576 [--seed-prefix s]

Each stranger has a fresh sim identity, completes the handshake with ``--peer`` and then sends
a frame header announcing ``--size`` bytes followed by all but the last of them. It prints
``READY <n>`` once every stranger is connected and has handed its bytes to the kernel, then
holds the connections until its standard input is closed, closes them all and exits 0. (In
a process of their own, the strangers' send buffers do not count towards the test process's
memory.)
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from perun_sim.crypto import verify_message
from perun_sim.wallet import SimAccount
from perun_tcp import handshake as hs

from perun_core.channel.types import Address

DIALING_AT_ONCE = 16
"""Handshakes in flight at once (well below the bus's cap of unauthenticated connections,
beyond which newcomers displace the oldest)."""


async def _stranger(
    endpoint: str, peer: Address, seed: bytes, size: int, dialing: asyncio.Semaphore
) -> asyncio.StreamWriter:
    host, _, port = endpoint[len("tcp://") :].rpartition(":")
    async with dialing:
        reader, writer = await asyncio.open_connection(host, int(port))
        await hs.dial(reader, writer, SimAccount.from_seed(seed), verify_message, peer, 30.0)
    writer.write(size.to_bytes(4, "big"))
    writer.write(bytes(size - 1))
    await writer.drain()
    return writer


async def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--peer", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--seed-prefix", default="stranger")
    args = p.parse_args()
    peer = Address(bytes.fromhex(args.peer))
    dialing = asyncio.Semaphore(DIALING_AT_ONCE)
    writers = await asyncio.gather(
        *(
            _stranger(args.endpoint, peer, f"{args.seed_prefix}-{i}".encode(), args.size, dialing)
            for i in range(args.count)
        )
    )
    print(f"READY {len(writers)}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for w in writers:
        w.close()
    await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
