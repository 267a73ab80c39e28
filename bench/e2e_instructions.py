"""Instructions per completed deposit in one process of the e2e cluster, counted by callgrind: the
CPU goal's figure (issue 19) without the machine's noise. The timing bench's CPU per deposit moved
16-22 ms from run to run on one machine and doubled on another; a count moves by what the code does.

    .venv/bin/python -m bench.e2e_instructions --role worker --deposits 100
    .venv/bin/python -m bench.e2e_instructions --role api --keep /tmp/api.cg   # callgrind_annotate it

The cluster of `python -m bench --groups e2e` (private mariadbd, both simulators, every PenPay
process; one saga worker, so the role's count is all of the saga's work) runs with the role under
`valgrind --tool=callgrind --instr-atstart=no`. After a warm-up of deposits (imports, caches, pools,
the float's leases), counting is switched on (callgrind_control -i on) for `--deposits` deposits at
`--concurrency` in flight, until they are final and their notices sent, then off. The role runs
about 50x slower while counted, so the saga's grace periods are stretched (a deposit still waits for
nothing but its callbacks) and fewer deposits are in flight than in the e2e group; what a process
batches across transactions (acknowledgements, the relay's reads) depends on that, so compare counts
at the same concurrency. User space only, every thread of the process; the kernel's share (sockets,
fsync) is in the e2e group's CPU figures. Needs valgrind (Debian package `valgrind`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench.instructions import counting, dumped_total

# The cluster's process names by role (one saga worker: the role is the whole saga's work; the
# gateway keeps its 3 s lease while slowed at a few deposits in flight)
ROLES = {
    "api": "api",
    "worker": "worker-1",
    "callbacks": "callbacks",
    "notify": "notify",
    "relay": "relay",
    "audit": "audit",
    "gateway": "gateway",
}
# Fast saga timings, but the graces a counted (slowed) process could outrun stretched: a deposit's
# steps then follow its answers alone, as at full speed, and no sweep finds one late.
SLOW_PROCESS_SAGAS = {
    "PENPAY_SAGA_CALL_GRACE": "600",
    "PENPAY_SAGA_STK_CALLBACK_WAIT": "600",
    "PENPAY_SAGA_B2C_RESULT_WAIT": "600",
    "PENPAY_SWEEPER_EVENT_GRACE": "600",
}


async def measure(
    role: str,
    deposits: int,
    concurrency: int,
    warmup: int,
    redis_url: str,
    keep: str | None,
    statement_cache: int | None = None,
) -> tuple[int, int]:
    """(deposits completed in the window, instructions the role's process executed in it)."""
    import grpc

    from bench.e2e import (
        FAST_ARGON2,
        NO_LIMITS,
        _dispose_engine,
        _sim_limits,
        _wait_final,
        _wait_notices,
        _with_driver,
        deposit_op,
    )
    from bench.load import counted
    from bench.private_mariadb import private_mariadb
    from bench.scratch import scratch_database
    from bench.users import DEPOSITS_PER_USER, fund_agent, make_users
    from penpay.payments.v1 import payments_pb2_grpc
    from proving.cluster import Cluster, ClusterConfig
    from workers.notifications import NOTICE_GROUP

    name = ROLES[role]
    with (
        private_mariadb() as server,
        tempfile.TemporaryDirectory(prefix="penpay-e2e-instr-") as tmp,
    ):
        if server is None:
            raise RuntimeError("a private mariadbd is needed (mariadbd installed, run as root)")
        with scratch_database(server.admin_url, migrated=False) as (_db, url):
            out = os.path.join(tmp, "callgrind.out")
            wrapper = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
            config = ClusterConfig(
                database_url=_with_driver(url, "asyncmy", statement_cache=statement_cache),
                redis_url=redis_url,
                workdir=Path(tmp),
                seed=7,
                workers=1,
                float_usd_cents=10_000_000_00,
                float_kes_cents=1_000_000_000_00,
                env={**FAST_ARGON2, **SLOW_PROCESS_SAGAS, "PENPAY_EVENT_LOOP": "uvloop"},
                mpesa_callback_delay=1.0,
                wrap={name: wrapper},
                start_timeout=300.0,
            )
            async with Cluster(config) as cluster, contextlib.AsyncExitStack() as stack:
                stack.push_async_callback(_dispose_engine, url)
                addr, control = cluster.addresses["grpc"], cluster.addresses["deriv_control"]
                await fund_agent(control, "10000000.00")
                await _sim_limits(control, NO_LIMITS, cluster)
                # a user makes at most DEPOSITS_PER_USER deposits (the limits' hourly count)
                users = await make_users(
                    addr, control, max(-(-(warmup + deposits) // DEPOSITS_PER_USER), 2 * concurrency)
                )
                turns = itertools.count()
                pid = cluster.processes[name].pid
                assert pid is not None
                payers = itertools.count()
                async with grpc.aio.insecure_channel(addr) as channel:
                    payments = payments_pb2_grpc.PaymentsServiceStub(channel)

                    async def phase(count: int) -> int:
                        since = datetime.now(UTC).replace(microsecond=0)
                        await asyncio.sleep(1)  # created_at >= since, whatever the rounding
                        ops = [
                            deposit_op(payments, users[next(turns) % len(users)], payers)
                            for _ in range(count)
                        ]
                        sample = await counted(concurrency, ops)
                        if sample.errors:
                            raise RuntimeError(f"{sample.errors} deposits failed: {sample.first_error}")
                        rows = await _wait_final(url, "DEPOSIT", since, count, 60 + 5 * count)
                        done = sum(1 for o in rows if o.status == "COMPLETED")
                        final = sum(1 for o in rows if o.status in ("COMPLETED", "FAILED", "REVERSED"))
                        await _wait_notices(url, NOTICE_GROUP, since, final, timeout=60 + count)
                        return done

                    await phase(warmup)
                    with counting(pid):
                        done = await phase(deposits)
                count = await dumped_total(out)
                if keep:
                    for path in Path(tmp).glob("callgrind.out*"):
                        shutil.copy(path, keep + str(path)[len(out) :])
                return done, count


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--role", default="worker", choices=sorted(ROLES))
    parser.add_argument("--deposits", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument(
        "--redis-url", default=os.environ.get("PENPAY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--keep", help="copy callgrind's output files to this path prefix")
    parser.add_argument(
        "--statement-cache",
        type=int,
        help="prepared statements per connection (stmt_cache_size; 0: as text); default: the engine's",
    )
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    done, instructions = asyncio.run(
        measure(
            args.role,
            args.deposits,
            args.concurrency,
            args.warmup,
            args.redis_url,
            args.keep,
            args.statement_cache,
        )
    )
    if not done or not instructions:
        print(f"{args.role}: nothing counted ({done} deposits completed)", file=sys.stderr)
        return 1
    print(
        f"{args.role}: {instructions / done:,.0f} instructions per completed deposit "
        f"({done} deposits, {args.concurrency} in flight)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
