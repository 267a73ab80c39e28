"""`penpay dead-letters list|replay`: inspect and replay `<stream>.dead` on Redis Streams.

`list` prints ids, groups, event types and errors (never payloads). `replay` re-adds a dead
letter to its original stream (every group of that stream sees it again; groups that had
processed it skip it through their inbox) and deletes it from the dead-letter stream.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from penpay import event_loop
from penpay.cli_args import command_settings

if TYPE_CHECKING:
    from penpay.settings import Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("dead-letters", help="list or replay dead-lettered events")
    actions = parser.add_subparsers(dest="dead_letters_command", required=True, metavar="ACTION")
    for name, help_text in (
        ("list", "list dead letters"),
        ("replay", "put dead letters back on their stream (all of --stream, or one --id)"),
    ):
        action = actions.add_parser(name, help=help_text)
        action.add_argument("--stream", help="original stream, e.g. penpay.payments (default: all)")
        action.add_argument("--id", dest="dead_id", help="dead-letter message id")
        action.add_argument("--redis-url", help="overrides PENPAY_REDIS_URL")
        action.add_argument("--stream-prefix", default="", help="Redis key prefix of the streams")
        action.add_argument("--count", type=int, default=1000, help="at most this many per stream")
        action.set_defaults(handler=run, action=name)


def run(args: argparse.Namespace) -> int:
    settings = command_settings(args)
    if not settings.redis_url:
        print("dead letters of the in-process bus live in its process; set PENPAY_REDIS_URL or --redis-url")
        return 2
    return event_loop.run(_run(settings, args))


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    from domain.shared.clock import SystemClock
    from penpay.bootstrap import message_bus

    # The process's clock: only a dead letter's dead_at reads it, and this command writes none.
    bus = message_bus(settings, clock=SystemClock(), stream_prefix=args.stream_prefix)
    try:
        streams = [args.stream] if args.stream else await bus.dead_letter_streams()
        found = 0
        for stream in streams:
            for letter in await bus.list_dead(stream, count=args.count):
                if args.dead_id and letter.dead_id != args.dead_id:
                    continue
                found += 1
                if args.action == "list":
                    print(
                        f"{letter.stream} {letter.dead_id} original={letter.original_id} "
                        f"group={letter.group} event_type={letter.fields.get('event_type', '?')} "
                        f"event_id={letter.fields.get('event_id', '?')} deliveries={letter.deliveries} "
                        f"error={letter.error!r}"
                    )
                else:
                    new_id = await bus.replay_dead(stream, letter.dead_id)
                    print(f"replayed {stream} {letter.dead_id} -> {new_id}")
        if args.dead_id and not found:
            print(f"no dead letter {args.dead_id}")
            return 1
        if args.action == "list":
            print(f"{found} dead letter(s)")
        return 0
    finally:
        await bus.close()
