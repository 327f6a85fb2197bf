"""A perun-tcp peer in its own OS process, for the multi-process tests.

    python tcp_echo_peer.py --seed bob --listen tcp://127.0.0.1:0 --count 1000 [--start 0]

It listens, prints ``READY <endpoint>``, then expects ``--count`` numbered envelopes
(``ChannelUpdateAcc`` versions ``start, start+1, ...``) and echoes each one back to its
sender over the connection it came on. After the last one it prints ``DONE <n>`` and exits
0 once its standard input is closed (so the parent can read every echo first). Anything out
of order prints ``ERROR ...`` and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from perun_sim.crypto import verify_message
from perun_sim.wallet import SimAccount
from perun_tcp import TcpBus

from perun_core.wire.messages import ChannelUpdateAcc, Envelope


async def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seed", required=True)
    p.add_argument("--listen", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--start", type=int, default=0)
    args = p.parse_args()
    me = SimAccount.from_seed(args.seed.encode())
    bus = TcpBus(me, verify_message, handshake_timeout=5.0, close_timeout=2.0)
    try:
        ep = await bus.listen_on(args.listen)
        sub = bus.subscribe(me.address)
        print(f"READY {ep}", flush=True)
        for expected in range(args.start, args.start + args.count):
            env = await asyncio.wait_for(sub.next(), 30)
            if env is None:
                print("ERROR subscription closed", flush=True)
                return 1
            msg = env.msg
            if not isinstance(msg, ChannelUpdateAcc) or msg.version != expected:
                print(f"ERROR expected version {expected}, got {msg!r}", flush=True)
                return 1
            await bus.publish(Envelope(me.address, env.sender, msg))
        print(f"DONE {args.count}", flush=True)
        # Keep the connection until the parent has read every echo and closes our stdin.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        return 0
    finally:
        await bus.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
