#!/usr/bin/env python3
"""Phone calls per worker: the demo's `echo` agent answering real media-WebSocket calls.

Each repetition starts a fresh release demo worker (no built-in callers) and drives it with
`openrtc stress` over loopback, on the same machine:

1. **cost**: `--cost-calls` echo calls for `--duration` seconds; the worker's mean process
   CPU over the run divided by the calls (CPU per call, 100 = one core), and its RSS growth
   (highest RSS during the run minus its RSS before the first call) divided by the calls;
2. **capacity**: `openrtc stress --find-capacity --max-lateness-p99-ms SLO`: coarse steps of
   `--step` calls, then bisection to within 10 %, each level held when every call completed
   and the worker's outbound lateness p99 of its worst call stayed within the SLO.

Before each measurement the machine must be quiet: at least `--quiet-idle` % of its CPUs idle
over 2 s (waited for up to `--quiet-wait` s). One that starts on a busy machine is marked
invalid and run again (at most twice); the load average before and after is recorded too.
The headline is the median of the valid repetitions with their spread (min to max). The
stress client shares the worker's two cores, so every figure is the pair's, stated as such.

Usage (from the repository root, after `cargo build --release -p openrtc-demo -p openrtc-cli`):

    python3 bench/calls.py [--reps 3] [--output target/bench-calls.json]
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "target" / "release" / "openrtc-demo"
CLI = ROOT / "target" / "release" / "openrtc"


def load_average():
    with open("/proc/loadavg", encoding="ascii") as f:
        return [float(x) for x in f.read().split()[:3]]


def snapshot(env):
    out = subprocess.run(
        [str(CLI), "top", "--once", "--format", "json"],
        env=env, capture_output=True, text=True, check=True, timeout=10,
    ).stdout
    return json.loads(out.splitlines()[0])


class Worker:
    """A release demo worker without callers, on any free media port, in its own runtime dir."""

    def __init__(self, name):
        self.dir = tempfile.TemporaryDirectory(prefix="openrtc-bench-calls-")
        self.env = dict(os.environ, XDG_RUNTIME_DIR=self.dir.name, RUST_LOG="warn")
        self.name = name
        self.stderr = open(Path(self.dir.name) / "demo.stderr", "w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [str(DEMO), "--callers", "0", "--worker-name", name,
             "--http-addr", "off", "--media-addr", "127.0.0.1:0", "--log-file", "off",
             "--max-sessions", "100000"],
            env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=self.stderr, cwd=self.dir.name,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                snap = snapshot(self.env)
                if snap["worker"].get("media_addr"):
                    self.url = f"ws://{snap['worker']['media_addr']}/media"
                    self.idle_rss_bytes = snap["worker"]["rss_bytes"]
                    return
            except (subprocess.SubprocessError, json.JSONDecodeError, IndexError):
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"the demo worker did not start (see {self.stderr.name})")
            time.sleep(0.2)

    def stress(self, args, output):
        command = [str(CLI), "stress", "--url", self.url, "--worker", self.name,
                   "--agent-mix", "echo=100", "--output", str(output), *args]
        result = subprocess.run(command, env=self.env, capture_output=True, text=True)
        if result.returncode not in (0, 1):
            raise SystemExit(f"stress failed ({result.returncode}): {result.stderr}")
        with open(output, encoding="utf-8") as f:
            return json.load(f), " ".join(command[1:])

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.stderr.close()
        self.dir.cleanup()


def idle_pct(seconds=2.0):
    """The share of all CPUs' time spent idle over `seconds`, in %."""
    def sample():
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
        return sum(fields), fields[3] + fields[4]  # idle + iowait
    total1, idle1 = sample()
    time.sleep(seconds)
    total2, idle2 = sample()
    return 100.0 * (idle2 - idle1) / max(total2 - total1, 1)


def wait_quiet(quiet_idle, max_wait_s):
    """Waits (up to `max_wait_s`) until the machine is at least `quiet_idle` % idle; returns
    the last idle share seen. The previous measurement's own load average decays for minutes,
    so idle time, not the load average, says whether anything else is running."""
    deadline = time.monotonic() + max_wait_s
    while True:
        idle = idle_pct()
        if idle >= quiet_idle or time.monotonic() >= deadline:
            return idle


def measured(run, args, attempts=3):
    """Runs `run()` until one starts on a quiet machine; returns its result with the machine's
    idle share before it and the load average before and after."""
    for attempt in range(attempts):
        idle = wait_quiet(args.quiet_idle, args.quiet_wait)
        before = load_average()
        result = run()
        after = load_average()
        valid = idle >= args.quiet_idle
        record = {"idle_pct_before": round(idle, 1), "load_before": before,
                  "load_after": after, "valid": valid, **result}
        if valid or attempt == attempts - 1:
            return record
        print(f"  not quiet ({idle:.0f} % idle < {args.quiet_idle} %): again", file=sys.stderr)
    raise AssertionError("unreachable")


def cost(args, rep, out_dir):
    worker = Worker(f"bench-calls-cost-{rep}")
    try:
        document, command = worker.stress(
            ["--calls", str(args.cost_calls), "--ramp", "50/s",
             "--duration", f"{args.duration}s"],
            out_dir / f"cost-{rep}.json")
        summary = document["summary"]
        w = summary["worker"]
        calls = summary["calls"]["completed"]
        return {
            "command": command,
            "calls_completed": calls,
            "calls_failed": summary["calls"]["failed"],
            "cpu_pct_mean": w["cpu_pct_mean"],
            "cpu_pct_per_call": w["cpu_pct_mean"] / max(calls, 1),
            "idle_rss_bytes": worker.idle_rss_bytes,
            "rss_bytes_max": w["rss_bytes_max"],
            "rss_bytes_per_call": (w["rss_bytes_max"] - worker.idle_rss_bytes) / max(calls, 1),
            "call_lateness_p99_ms_worst": w["call_lateness_p99_ms_max"],
            "echo_rtt_p99_ms": summary["echo_rtt_ms"]["p99_ms"],
        }
    finally:
        worker.stop()


def capacity(args, rep, out_dir):
    worker = Worker(f"bench-calls-capacity-{rep}")
    try:
        document, command = worker.stress(
            ["--calls", str(args.step), "--ramp", args.ramp, "--duration", f"{args.duration}s",
             "--find-capacity", "--max-calls", str(args.max_calls),
             "--max-lateness-p99-ms", str(args.slo_ms)],
            out_dir / f"capacity-{rep}.json")
        levels = [
            {"calls": level["calls"], "held": level["held"],
             "call_lateness_p99_ms_worst": level["summary"]["slo"]["call_lateness_p99_ms"],
             "cpu_pct_mean": (level["summary"].get("worker") or {}).get("cpu_pct_mean")}
            for level in document["levels"]
        ]
        return {"command": command, "capacity_calls": document["capacity_calls"],
                "levels": levels}
    finally:
        worker.stop()


def spread(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "values": values}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration", type=int, default=20, help="seconds each call streams")
    parser.add_argument("--cost-calls", type=int, default=100)
    parser.add_argument("--step", type=int, default=200)
    parser.add_argument("--ramp", default="100/s")
    parser.add_argument("--max-calls", type=int, default=5000)
    parser.add_argument("--slo-ms", type=float, default=20.0)
    parser.add_argument("--quiet-idle", type=float, default=85.0,
                        help="%% of all CPUs idle (over 2 s) that makes the machine quiet")
    parser.add_argument("--quiet-wait", type=float, default=120.0,
                        help="seconds to wait for a quiet machine before measuring anyway")
    parser.add_argument("--output", type=Path, default=ROOT / "target" / "bench-calls.json")
    parser.add_argument("--part", choices=["both", "cost", "capacity"], default="both",
                        help="measure the cost per call, the capacity, or both")
    args = parser.parse_args()
    for binary in (DEMO, CLI):
        if not binary.exists():
            raise SystemExit(f"{binary} is missing: cargo build --release -p openrtc-demo -p openrtc-cli")
    out_dir = args.output.parent / "bench-calls"
    out_dir.mkdir(parents=True, exist_ok=True)
    reps = []
    # Interleaved: each repetition measures the cost, then the capacity, on fresh workers.
    for rep in range(1, args.reps + 1):
        c = k = None
        if args.part in ("both", "cost"):
            print(f"repetition {rep}: cost at {args.cost_calls} calls", file=sys.stderr)
            c = measured(lambda: cost(args, rep, out_dir), args)
            print(f"  cpu/call {c['cpu_pct_per_call']:.3f}% rss/call {c['rss_bytes_per_call']:.0f} B"
                  f" (load {c['load_before'][0]:.2f} -> {c['load_after'][0]:.2f})", file=sys.stderr)
        if args.part in ("both", "capacity"):
            print(f"repetition {rep}: capacity at a {args.slo_ms} ms lateness p99", file=sys.stderr)
            k = measured(lambda: capacity(args, rep, out_dir), args)
            print(f"  {k['capacity_calls']} calls held, levels "
                  + ", ".join(f"{l['calls']}{'+' if l['held'] else '-'}" for l in k["levels"])
                  + f" (load {k['load_before'][0]:.2f} -> {k['load_after'][0]:.2f})", file=sys.stderr)
        reps.append({"cost": c, "capacity": k})
    valid_cost = [r["cost"] for r in reps if r["cost"] and r["cost"]["valid"]]
    valid_capacity = [r["capacity"] for r in reps if r["capacity"] and r["capacity"]["valid"]]
    headline = {
        "capacity_calls": spread([r["capacity_calls"] for r in valid_capacity]) if valid_capacity else None,
        "cpu_pct_per_call": spread([round(r["cpu_pct_per_call"], 4) for r in valid_cost]) if valid_cost else None,
        "rss_bytes_per_call": spread([round(r["rss_bytes_per_call"]) for r in valid_cost]) if valid_cost else None,
        "valid_repetitions": {"cost": len(valid_cost), "capacity": len(valid_capacity)},
    }
    report = {
        "when_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": vars(args) | {"output": str(args.output)},
        "cpus": os.cpu_count(),
        "repetitions": reps,
        "headline": headline,
    }
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(headline, indent=2))


if __name__ == "__main__":
    main()
