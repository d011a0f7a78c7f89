"""`python -m testbed`: the local GPU cluster and the demo (the simulated fleet's own command line
is `python -m testbed.sim`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .cluster.cli import add_parser as add_cluster_parser


def _demo(args: argparse.Namespace) -> int:
    from . import demo

    if args.action == "down":
        return demo.down()
    if args.action == "clean":
        return demo.clean()
    return demo.up(duration=args.duration, rate=args.rate, burst=args.burst)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m testbed",
        description="deepseek-operator's test bed: local GPU cluster and demo.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_cluster_parser(sub)
    demo = sub.add_parser(
        "demo", help="local cluster + fleet + operator; an example scaling under a load step"
    )
    demo.add_argument(
        "action",
        nargs="?",
        choices=["up", "down", "clean"],
        default="up",
        help="up: run the demo; down: stop it (state kept); clean: stop and delete the state of "
        "every local cluster (the demo's and the tests') and the demo's logs",
    )
    demo.add_argument("--duration", type=float, default=240.0, help="seconds of load")
    demo.add_argument("--rate", type=float, default=2.0, help="base request rate (req/s)")
    demo.add_argument("--burst", type=float, default=24.0, help="request rate of the burst")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
