"""`density`: N reference sessions that each hold memory and wait; what the worker pays per
session, and how far the reference's per-session memory figure is from what each holds.

Each count runs in a fresh child process (`--child`): RSS one count leaves behind in the
allocator would otherwise count against the next."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from . import common
from .common import MIB

# The reference samples its per-session memory once a second (equal share of VmRSS).
_MEMORY_SAMPLE_WAIT_S = 2.5
_PATIENCE_S = 120.0
PAGE = 4096


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions", type=common.counts, default=[16, 50, 100, 1000])
    parser.add_argument("--hold-mib", type=float, default=5.0, help="MiB each session holds")
    parser.add_argument("--hold-pattern", choices=["uniform", "skewed"], default="uniform")


HELD_FORMULA = {
    "uniform": "hold_bytes",
    "skewed": "hold_bytes * (1 + k % 4) * 2 // 5  (session k = 0..N-1; mean hold_bytes)",
}


def held_by(pattern: str, hold_bytes: int, k: int) -> int:
    """The bytes session k holds."""
    if pattern == "uniform":
        return hold_bytes
    return hold_bytes * (1 + k % 4) * 2 // 5


def run(args: argparse.Namespace) -> dict[str, Any]:
    hold_bytes = int(args.hold_mib * MIB)
    if args.child:
        if len(args.sessions) != 1:
            raise SystemExit("--child measures exactly one session count")
        rows = [common.run_on(args.loop, lambda: measure(args, args.sessions[0], hold_bytes))]
    else:
        rows = []
        for sessions in args.sessions:
            child = [
                "--child",
                "--loop",
                args.loop,
                "--sessions",
                str(sessions),
                "--hold-mib",
                str(args.hold_mib),
                "--hold-pattern",
                args.hold_pattern,
            ]
            rows.append(common.run_child("density", child)["rows"][0])
    return {
        "benchmark": "density",
        "side": "reference",
        "loop": args.loop,
        "hold_bytes": hold_bytes,
        "hold_pattern": args.hold_pattern,
        "held_bytes_per_session": HELD_FORMULA[args.hold_pattern],
        "reference_mem_unit_bytes": MIB,
        "rows": rows,
    }


async def measure(args: argparse.Namespace, sessions: int, hold_bytes: int) -> dict[str, Any]:
    socket_path = common.private_socket_path(f"density-{sessions}")
    index_of: dict[str, int] = {}
    holding: set[str] = set()
    release = asyncio.Event()

    async def body(session_id: str) -> None:
        size = held_by(args.hold_pattern, hold_bytes, index_of[session_id])
        held = bytearray(size)
        # Touch every page so the memory is really resident, not just reserved.
        held[::PAGE] = b"\x01" * len(range(0, size, PAGE))
        holding.add(session_id)
        await release.wait()
        del held

    pool = common.Pool(body, introspection=True, socket_path=socket_path)
    await pool.start()
    await asyncio.sleep(0.5)
    baseline = common.rss_bytes()
    for k in range(sessions):
        session_id = f"s-{k}"
        index_of[session_id] = k
        await pool.launch(session_id)
    deadline = time.monotonic() + _PATIENCE_S
    while len(holding) < sessions:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(holding)} of {sessions} sessions started holding")
        await asyncio.sleep(0.01)
    # Let the reference's memory sampler (1 s interval) see every session holding.
    await asyncio.sleep(_MEMORY_SAMPLE_WAIT_S)
    rss = common.rss_bytes()
    snapshot = await asyncio.to_thread(common.read_snapshot, socket_path)
    rss_after = common.rss_bytes()
    release.set()
    await pool.aclose()

    reported = {row["session_id"]: float(row["mem_mb"]) * MIB for row in snapshot["sessions"]}
    held = {sid: held_by(args.hold_pattern, hold_bytes, k) for sid, k in index_of.items()}
    errors = [abs(reported.get(sid, 0.0) - truth) / truth * 100.0 for sid, truth in held.items()]
    held_total = sum(held.values())
    return {
        "sessions": sessions,
        "rss_bytes": rss,
        "rss_per_session_bytes": rss // sessions,
        "rss_growth_per_session_bytes": (rss - baseline) // sessions,
        "overhead_per_session_bytes": (rss - baseline - held_total) // sessions,
        "attributed_bytes": int(round(sum(reported.values()))),
        "held_bytes": held_total,
        "attribution_error": {
            "mean_abs_pct": sum(errors) / len(errors) if errors else 0.0,
            "max_abs_pct": max(errors, default=0.0),
        },
        "baseline_rss_bytes": baseline,
        "rss_after_snapshot_bytes": rss_after,
        "sessions_in_snapshot": len(snapshot["sessions"]),
    }
