"""`throughput`: N sessions of the reference on a 20 ms frame cadence, each frame a fixed piece
of work: how late frames run, what it costs, and how many sessions stay on time.

Each session count runs in a fresh child process (`--child`), so peak RSS belongs to it."""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from typing import Any

from . import common
from .common import FRAME_S

OVERLOAD_P99_MS = 1000.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workload", choices=["cpu", "dsp", "vad"], default="cpu")
    parser.add_argument("--sessions", type=common.counts, default=[1, 10, 100, 1000, 5000])
    parser.add_argument("--warmup-secs", type=float, default=2.0)
    parser.add_argument("--measure-secs", type=float, default=5.0)
    parser.add_argument(
        "--no-introspection",
        action="store_true",
        help="run the pool without the reference's IntrospectionRuntime",
    )
    parser.add_argument(
        "--stop-after-overload",
        action="store_true",
        help=f"skip larger counts once one count's p99 lateness exceeds {OVERLOAD_P99_MS:.0f} ms",
    )


def child_args(args: argparse.Namespace, sessions: int) -> list[str]:
    out = [
        "--child",
        "--loop",
        args.loop,
        "--sessions",
        str(sessions),
        "--workload",
        args.workload,
        "--warmup-secs",
        str(args.warmup_secs),
        "--measure-secs",
        str(args.measure_secs),
    ]
    if args.no_introspection:
        out.append("--no-introspection")
    return out


def measure_in_child(args: argparse.Namespace, sessions: int) -> dict[str, Any]:
    report = common.run_child("throughput", child_args(args, sessions))
    return report["rows"][0]


def report(args: argparse.Namespace, rows: list[dict], skipped: list[int]) -> dict[str, Any]:
    def sustainable(limit_ms: float) -> int:
        ok = [r["sessions"] for r in rows if r["frames"] > 0 and r["lateness_ms"]["p99"] < limit_ms]
        return max(ok, default=0)

    out: dict[str, Any] = {
        "benchmark": "throughput",
        "side": "reference",
        "loop": args.loop,
        "workload": args.workload,
        "introspection": not args.no_introspection,
        "rows": rows,
        "sustainable_at_20ms_p99": sustainable(20.0),
        "sustainable_at_100ms_p99": sustainable(100.0),
    }
    out["skipped"] = skipped
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.child:
        if len(args.sessions) != 1:
            raise SystemExit("--child measures exactly one session count")
        row = common.run_on(args.loop, lambda: measure(args, args.sessions[0]))
        return report(args, [row], [])
    rows: list[dict] = []
    skipped: list[int] = []
    for index, sessions in enumerate(args.sessions):
        row = measure_in_child(args, sessions)
        rows.append(row)
        common.log.info(
            "throughput %s x%d: p99 %.2f ms, %.1f%% CPU",
            args.workload,
            sessions,
            row["lateness_ms"]["p99"],
            row["process_cpu_pct"],
        )
        if args.stop_after_overload and row["lateness_ms"]["p99"] > OVERLOAD_P99_MS:
            skipped = list(args.sessions[index + 1 :])
            break
    return report(args, rows, skipped)


async def measure(args: argparse.Namespace, sessions: int) -> dict[str, Any]:
    from .workloads import frame_work

    introspection = not args.no_introspection
    warmup, window = args.warmup_secs, args.measure_secs
    catcher = common.install_slow_catcher() if introspection else None
    socket_path = common.private_socket_path(f"throughput-{sessions}") if introspection else None

    go = asyncio.Event()
    timing: dict[str, float] = {}
    lateness: list[float] = []
    index_of: dict[str, int] = {}
    counters = {"early": 0}

    async def body(session_id: str) -> None:
        seed = index_of[session_id]
        work = frame_work(args.workload, seed)
        is_async = getattr(work, "is_async", False)
        await go.wait()
        # Stagger the sessions' frames across the 20 ms period.
        first = timing["start"] + FRAME_S * (seed % 20) / 20.0
        measure_from, measure_until = timing["from"], timing["until"]
        monotonic = time.monotonic
        mine: list[float] = []
        early = 0
        n = 0
        while True:
            scheduled = first + n * FRAME_S
            if scheduled >= measure_until:
                break
            # Burst catch-up: a late frame is not skipped; the next one is due at once.
            await asyncio.sleep(max(0.0, scheduled - monotonic()))
            now = monotonic()
            if now >= measure_until:
                # Frames after the window are not counted: skip the backlog of an
                # overloaded loop instead of running it for nothing.
                break
            if now >= measure_from:
                # uvloop's timers have 1 ms resolution and may fire a little early: count
                # such frames as on time, and say how many there were.
                early += now < scheduled
                mine.append(max(0.0, now - scheduled) * 1e3)
            if is_async:
                await work()
            else:
                work()
            n += 1
        if hasattr(work, "aclose"):
            await work.aclose()
        lateness.extend(mine)
        counters["early"] += early

    pool = common.Pool(body, introspection=introspection, socket_path=socket_path)
    await pool.start()
    launch_began = time.monotonic()
    for k in range(sessions):
        session_id = f"s-{k}"
        index_of[session_id] = k
        await pool.launch(session_id)
    # Let every entrypoint bind its session before the clock starts.
    while len(pool.running) < sessions:
        await asyncio.sleep(0.005)
    launch_secs = time.monotonic() - launch_began
    start = time.monotonic() + 0.2
    timing.update(start=start, **{"from": start + warmup, "until": start + warmup + window})

    cpu: dict[str, float] = {}
    machine: dict[str, tuple[int, int, int] | None] = {}

    def sample_cpu() -> None:
        time.sleep(max(0.0, timing["from"] - time.monotonic()))
        cpu["before"], cpu["at_from"] = common.cpu_seconds(), time.monotonic()
        machine["before"] = common.machine_cpu_ticks()
        time.sleep(max(0.0, timing["until"] - time.monotonic()))
        cpu["after"], cpu["at_until"] = common.cpu_seconds(), time.monotonic()
        machine["after"] = common.machine_cpu_ticks()

    sampler = threading.Thread(target=sample_cpu, name="peer-cpu-window", daemon=True)
    sampler.start()
    go.set()
    deadline = timing["until"] + 120.0
    while pool.running and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    unfinished = len(pool.running)
    await asyncio.to_thread(sampler.join)
    slow_logs = catcher.count if catcher is not None else None
    await pool.aclose()

    cpu_used = cpu["after"] - cpu["before"]
    frames = len(lateness)
    row: dict[str, Any] = {
        "sessions": sessions,
        "frames": frames,
        "lateness_ms": common.spread(lateness),
        "process_cpu_pct": cpu_used / window * 100.0,
        # Every process's CPU over the same window: others' is this minus process_cpu_pct.
        "machine_cpu_pct": common.machine_cpu_pct(machine.get("before"), machine.get("after")),
        "cpu_seconds_per_1000_frames": cpu_used / frames * 1000.0 if frames else 0.0,
        "peak_rss_bytes": common.peak_rss_bytes(),
        "expected_frames": int(round(sessions * window / FRAME_S)),
        "cpu_window_secs": cpu["at_until"] - cpu["at_from"],
        "launch_secs": launch_secs,
        "early_wakeups": counters["early"],
    }
    if slow_logs is not None:
        row["slow_session_logs"] = slow_logs
    if unfinished:
        row["unfinished_sessions"] = unfinished
    return row
