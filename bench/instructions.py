"""Instructions per Transfer of the gateway or of the bare forwarder, counted by valgrind's callgrind:
a figure that, unlike the rates, does not move with what else runs on the machine.

    .venv/bin/python -m bench.instructions                          # the gateway, 1,000 transfers
    .venv/bin/python -m bench.instructions --role bare-forwarder    # the floor
    .venv/bin/python -m bench.instructions --transfers 2000 --keep /tmp/cg.out

The role runs under `valgrind --tool=callgrind --instr-atstart=no` (about 50x slower, so one
server process is the bottleneck and requests queue in front of it, as under full load); counting is
switched on (callgrind_control -i on) after a warm-up of 200 transfers and off after N transfers at
64 in flight. The count covers every thread of the process (the journal's too), user space only: the
kernel's share (fsync, sockets) is in the bench's CPU figures, not here. `--keep` keeps callgrind's
file for `callgrind_annotate`. Needs valgrind (Debian package `valgrind`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator

from bench.load import counted
from bench.roles import processes, spawn
from bench.users import fund_agent

WARMUP = 200
INFLIGHT = 64


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, check=False)


@contextlib.contextmanager
def counting(pid: int) -> Iterator[None]:
    """Instructions counted by the callgrind process `pid` inside the block (started with
    --instr-atstart=no), dumped at its end for callgrind_total."""
    _control(pid, "-i", "on")
    try:
        yield
    finally:
        _control(pid, "-i", "off")
        _control(pid, "-d")


async def dumped_total(path_prefix: str, timeout: float = 60.0) -> int:
    """callgrind_total once the counted process has written its dump (it does so shortly after
    `counting` asks, on its own time); 0 when none came within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (total := callgrind_total(path_prefix)) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    return total


def callgrind_total(path_prefix: str) -> int:
    """The largest event total among callgrind's files (the dump taken after the window)."""
    total = 0
    for path in glob.glob(path_prefix + "*"):
        with open(path) as text:
            for line in text:
                if line.startswith(("summary:", "totals:")):
                    total = max(total, int(line.split()[1]))
    return total


async def measure(role: str, transfers: int, keep: str | None) -> tuple[int, int]:
    """(transfers completed, instructions counted) for `transfers` Transfer calls through `role`."""
    import grpc

    from deriv_gateway.simulator import DEFAULT_AGENT_TOKEN
    from penpay.common.v1 import money_pb2
    from penpay.deriv.v1 import deriv_gateway_pb2 as pb
    from penpay.deriv.v1 import deriv_gateway_pb2_grpc as pb_grpc
    from persistence import migrate

    with tempfile.TemporaryDirectory(prefix="penpay-instr-") as tmp, processes() as procs:
        out = os.path.join(tmp, "callgrind.out")
        journal = f"sqlite+aiosqlite:///{tmp}/journal.db"
        await asyncio.to_thread(migrate.upgrade, journal)
        sim, sim_info = spawn("deriv-sim")
        procs.append(sim)
        await fund_agent(sim_info["control"], "100000000.00")
        wrapper = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
        if role == "gateway":
            server, info = spawn("gateway", wrapper=wrapper, ws_url=sim_info["ws"], database_url=journal)
        else:
            server, info = spawn(role, wrapper=wrapper, ws_url=sim_info["ws"], token=DEFAULT_AGENT_TOKEN)
        procs.append(server)
        amount = money_pb2.Money(amount_cents=1000, currency="USD")
        async with grpc.aio.insecure_channel(info["addr"]) as channel:
            stub = pb_grpc.DerivGatewayServiceStub(channel)

            async def one() -> None:
                request = pb.TransferRequest(
                    transfer_id=str(uuid.uuid4()), client_loginid="CR90000001", amount=amount
                )
                await stub.Transfer(request, timeout=120)

            await counted(INFLIGHT, [one] * WARMUP)
            with counting(server.pid):
                sample = await counted(INFLIGHT, [one] * transfers)
        if sample.errors:
            raise RuntimeError(f"{sample.errors} transfers failed: {sample.first_error}")
        count = await dumped_total(out, timeout=20)
        if keep:
            for path in glob.glob(out + "*"):
                shutil.copy(path, keep + path[len(out) :])
        return sample.count, count


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--role", default="gateway", choices=["gateway", "bare-forwarder"])
    parser.add_argument("--transfers", type=int, default=1000)
    parser.add_argument("--keep", help="copy callgrind's output files to this path prefix")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    done, instructions = asyncio.run(measure(args.role, args.transfers, args.keep))
    print(f"{args.role}: {instructions / max(done, 1):,.0f} instructions per Transfer ({done} transfers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
