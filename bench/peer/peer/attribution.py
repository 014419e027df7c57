"""`attribution`: among N well-behaved reference sessions, one random session blocks the event
loop per trial; does the reference's top socket name exactly that session, how soon, and with
what stall duration?

The pool runs in a child process (`--child`) that takes cues on stdin (`block K`, `quit`) and
reports events on stdout, one JSON line each: `ready`, `block` (start on CLOCK_MONOTONIC, which
the parent shares, and measured duration) and `slow` (each `[slow-session]` line the reference
logs, with its session id and stall in ms). The parent polls the child's top socket every
~1 ms during a trial and judges what the snapshots showed."""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import random
import subprocess
import sys
import threading
import time
from typing import Any

from . import common

TRIAL_PATIENCE_S = 10.0
# After the chosen session shows slow, keep watching this long for any other slow row.
GRACE_S = 0.2
# How long to wait for the previous trial's `slow` status to wear off (the reference
# keeps a session slow for 5 s after its last block).
CLEAR_PATIENCE_S = 30.0
HOT_ID = "hot"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions", type=common.counts, default=[50, 100])
    parser.add_argument("--block", choices=["sleep", "spin"], default="sleep")
    parser.add_argument("--block-ms", type=int, default=300)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--in-child-task", action="store_true")
    parser.add_argument("--with-hot", action="store_true")
    parser.add_argument("--threshold-ms", type=int, default=50)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--socket", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> dict[str, Any] | None:
    if args.child:
        common.run_on(args.loop, lambda: child_main(args))
        return None
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 63)
    rng = random.Random(seed)
    rows = [measure(args, sessions, rng) for sessions in args.sessions]
    return {
        "benchmark": "attribution",
        "side": "reference",
        "loop": args.loop,
        "block": args.block,
        "block_ms": args.block_ms,
        "threshold_ms": args.threshold_ms,
        "in_child_task": args.in_child_task,
        "with_hot": args.with_hot,
        "seed": seed,
        "rows": rows,
    }


# ---------------------------------------------------------------------------------------------
# Parent


class Child:
    """The child process running the pool, with its event lines read on a thread."""

    def __init__(self, args: argparse.Namespace, sessions: int, socket_path) -> None:
        command = common.child_command(
            "attribution",
            [
                "--child",
                "--loop",
                args.loop,
                "--sessions",
                str(sessions),
                "--block",
                args.block,
                "--block-ms",
                str(args.block_ms),
                "--threshold-ms",
                str(args.threshold_ms),
                "--socket",
                str(socket_path),
                *(["--in-child-task"] if args.in_child_task else []),
                *(["--with-hot"] if args.with_hot else []),
            ],
        )
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, text=True
        )
        self.events: queue.Queue[dict] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            line = line.strip()
            if line.startswith("{"):
                try:
                    self.events.put(json.loads(line))
                except json.JSONDecodeError:
                    pass
        self.events.put({"event": "exit"})

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def drain(self) -> list[dict]:
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    def wait_for(self, kind: str, patience: float) -> dict:
        deadline = time.monotonic() + patience
        while True:
            try:
                event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"the child sent no {kind!r} within {patience} s") from None
            if event.get("event") == kind:
                return event
            if event.get("event") == "exit":
                raise RuntimeError(f"the child exited before {kind!r}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the child sent no {kind!r} within {patience} s")

    def stop(self) -> None:
        try:
            self.send("quit")
            self.process.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()


def slow_ids(snapshot: dict) -> set[str]:
    return {row["session_id"] for row in snapshot.get("sessions", []) if row.get("status") == "slow"}


def measure(args: argparse.Namespace, sessions: int, rng: random.Random) -> dict[str, Any]:
    socket_path = common.private_socket_path(f"attribution-{sessions}")
    child = Child(args, sessions, socket_path)
    right = wrong = missed = 0
    latencies: list[float] = []
    errors: list[float] = []
    trials: list[dict] = []
    try:
        child.wait_for("ready", 180.0)
        time.sleep(1.0)  # let the start-up settle
        for number in range(args.trials):
            chosen = rng.randrange(sessions)
            outcome = trial(child, socket_path, chosen)
            outcome["trial"] = number + 1
            trials.append(outcome)
            common.log.info("attribution x%d trial %d: %s", sessions, number + 1, outcome)
            if outcome["result"] == "right":
                right += 1
                latencies.append(outcome["detection_latency_ms"])
                if outcome.get("duration_error_ms") is not None:
                    errors.append(outcome["duration_error_ms"])
            elif outcome["result"] == "wrong":
                wrong += 1
            else:
                missed += 1
    finally:
        child.stop()
        common.remove_socket_dir(socket_path)
    return {
        "sessions": sessions,
        "trials": args.trials,
        "right": right,
        "wrong": wrong,
        "missed": missed,
        "detection_latency_ms": common.spread(latencies),
        "duration_error_ms": common.spread(errors),
        "trial_log": trials,
    }


def wait_until_clear(socket_path) -> None:
    """Waits until no session shows `slow` (the status sticks for a while after a block)."""
    deadline = time.monotonic() + CLEAR_PATIENCE_S
    while time.monotonic() < deadline:
        if not slow_ids(common.read_snapshot(socket_path, timeout=10.0)):
            return
        time.sleep(0.1)
    raise RuntimeError("sessions stayed slow for too long between trials")


def trial(child: Child, socket_path, chosen: int) -> dict[str, Any]:
    chosen_id = f"s-{chosen}"
    wait_until_clear(socket_path)
    child.drain()  # forget slow lines from before this trial
    cued = time.monotonic()
    child.send(f"block {chosen}")
    seen: list[tuple[float, set[str]]] = []  # (received at, slow ids) per snapshot
    logs: list[dict] = []
    block: dict | None = None
    first_chosen: float | None = None
    while True:
        snapshot = common.read_snapshot(socket_path, timeout=TRIAL_PATIENCE_S + 5)
        received = time.monotonic()
        seen.append((received, slow_ids(snapshot)))
        for event in child.drain():
            if event.get("event") == "block" and event.get("index") == chosen:
                block = event
            elif event.get("event") == "slow":
                logs.append(event)
            elif event.get("event") == "exit":
                raise RuntimeError("the child exited during a trial")
        begun = block["start"] if block is not None else cued
        if block is not None:
            after = [ids for at, ids in seen if at >= begun]
            if first_chosen is None:
                first_chosen = next(
                    (at for at, ids in seen if at >= begun and chosen_id in ids), None
                )
            others = any(ids - {chosen_id} for ids in after) or any(
                e["session_id"] != chosen_id for e in logs if e["t"] >= begun
            )
            block_end = begun + block["duration_ms"] / 1e3
            if first_chosen is not None and received - first_chosen >= GRACE_S:
                break
            if others and received - block_end >= GRACE_S:
                break
        if received - begun > TRIAL_PATIENCE_S:
            break
        time.sleep(0.001)

    outcome: dict[str, Any] = {"chosen": chosen_id, "snapshots": len(seen)}
    if block is None:
        outcome["result"] = "missed"
        outcome["note"] = "the block never reported back"
        return outcome
    begun = block["start"]
    shown: set[str | None] = set()
    for at, ids in seen:
        if at >= begun:
            shown |= ids
    logged = [e for e in logs if e["t"] >= begun]
    named: set[str | None] = {e["session_id"] for e in logged}
    everyone = shown | named
    outcome["block_ms"] = block["duration_ms"]
    outcome["seen_slow"] = sorted(str(s) for s in everyone)
    if everyone - {chosen_id}:
        outcome["result"] = "wrong"
    elif chosen_id in shown:
        outcome["result"] = "right"
        assert first_chosen is not None
        outcome["detection_latency_ms"] = (first_chosen - begun) * 1e3
        reported = next((e["ms"] for e in logged if e["session_id"] == chosen_id), None)
        outcome["reported_ms"] = reported
        outcome["duration_error_ms"] = (
            abs(reported - block["duration_ms"]) if reported is not None else None
        )
    else:
        outcome["result"] = "missed"
    return outcome


# ---------------------------------------------------------------------------------------------
# Child


class _Out:
    """Event lines on stdout, one JSON object each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __call__(self, **event: Any) -> None:
        line = json.dumps(event)
        with self._lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()


def _block(kind: str, seconds: float) -> None:
    if kind == "sleep":
        time.sleep(seconds)
        return
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


async def child_main(args: argparse.Namespace) -> None:
    import numpy as np

    from pathlib import Path

    out = _Out()
    common.install_slow_catcher(
        lambda sid, ms, at: out(event="slow", session_id=sid, ms=ms, t=at)
    )
    sessions = args.sessions[0]
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    cues: dict[int, bool] = {}
    index_of: dict[str, int] = {}
    block_s = args.block_ms / 1e3
    ramp = np.arange(320, dtype=np.float32)

    async def frames(index: int) -> None:
        energy = 0.0
        # Frames start spread over the period, as calls that began at different times do
        # (the same as on our side).
        next_at = time.monotonic() + common.FRAME_S * (index / sessions - 1)
        while not stop.is_set():
            next_at += common.FRAME_S
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            energy += float(np.abs(np.sin(ramp + index)).sum())  # a little work
            if cues.pop(index, False):
                started = time.monotonic()
                _block(args.block, block_s)
                took = time.monotonic() - started
                out(event="block", index=index, start=started, duration_ms=took * 1e3)
                next_at = time.monotonic()

    async def hot() -> None:
        # ~5 ms of CPU per 10 ms, in 1 ms slices that yield to the loop in between.
        while not stop.is_set():
            for _ in range(5):
                _block("spin", 0.001)
                await asyncio.sleep(0)
            await asyncio.sleep(0.005)

    async def body(session_id: str) -> None:
        if session_id == HOT_ID:
            await hot()
            return
        index = index_of[session_id]
        if args.in_child_task:
            # The frame loop runs in a task the session spawns: it inherits the session id.
            task = asyncio.create_task(frames(index))
            await stop.wait()
            await task
        else:
            await frames(index)

    pool = common.Pool(
        body, introspection=True, socket_path=Path(args.socket), threshold_ms=args.threshold_ms
    )
    await pool.start()
    for k in range(sessions):
        index_of[f"s-{k}"] = k
        await pool.launch(f"s-{k}")
    if args.with_hot:
        await pool.launch(HOT_ID)
    expected = sessions + (1 if args.with_hot else 0)
    while len(pool.running) < expected:
        await asyncio.sleep(0.01)

    def read_cues() -> None:
        for line in sys.stdin:
            words = line.split()
            if words[:1] == ["block"] and len(words) == 2:
                loop.call_soon_threadsafe(cues.__setitem__, int(words[1]), True)
            elif words[:1] == ["quit"]:
                break
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=read_cues, name="peer-cues", daemon=True).start()
    out(event="ready", sessions=sessions, with_hot=args.with_hot)
    await stop.wait()
    await pool.aclose()
