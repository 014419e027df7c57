"""`overhead`: the cost of the reference's introspection, as process CPU per 1,000 frames of
the same workload with its IntrospectionRuntime on and off, alternated in fresh processes."""

from __future__ import annotations

import argparse
from typing import Any

from . import common, throughput


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds measured per run")
    parser.add_argument("--workload", choices=["cpu", "dsp"], default="dsp")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--warmup-secs", type=float, default=1.0, help="seconds of frames before measuring"
    )


def _child(args: argparse.Namespace, introspection: bool) -> dict[str, Any]:
    child = argparse.Namespace(
        loop=args.loop,
        workload=args.workload,
        warmup_secs=args.warmup_secs,
        measure_secs=args.seconds,
        no_introspection=not introspection,
    )
    return throughput.measure_in_child(child, args.sessions)


def run(args: argparse.Namespace) -> dict[str, Any]:
    rounds = []
    for number in range(args.rounds):
        on = _child(args, True)
        off = _child(args, False)
        on_cost = on["cpu_seconds_per_1000_frames"]
        off_cost = off["cpu_seconds_per_1000_frames"]
        ratio = on_cost / off_cost if off_cost > 0 else 0.0
        common.log.info(
            "overhead round %d: on %.5f, off %.5f CPU s/1k frames, ratio %.3f",
            number + 1,
            on_cost,
            off_cost,
            ratio,
        )
        rounds.append(
            {
                "introspection_on": on_cost,
                "introspection_off": off_cost,
                "ratio": ratio,
                "on": on,
                "off": off,
            }
        )
    ratios = [r["ratio"] for r in rounds]
    summary = common.spread(ratios)
    return {
        "benchmark": "overhead",
        "side": "reference",
        "loop": args.loop,
        "sessions": args.sessions,
        "seconds": args.seconds,
        "workload": args.workload,
        "rounds": rounds,
        "ratio": {
            "median": summary["median"],
            "min": min(ratios, default=0.0),
            "max": summary["max"],
            "count": summary["count"],
        },
    }
