"""Shared pieces: order statistics, process figures, the event loop choice, child processes,
and a CoroutinePool of the reference driven without a LiveKit server.

Nothing here imports the reference at module load, so a parent process that only starts
children and reads sockets stays light; the pool helpers import it when called.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import multiprocessing
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
FRAME_S = 0.020
HARNESS = Path(__file__).resolve().parent.parent / "harness.py"

log = logging.getLogger("peer")


# ---------------------------------------------------------------------------------------------
# Order statistics


def spread(values: Sequence[float]) -> dict[str, float | int]:
    """Median, p99 and max by nearest rank (index ceil(q*n)-1 of the sorted values)."""
    if not values:
        return {"median": 0.0, "p99": 0.0, "max": 0.0, "count": 0}
    ordered = sorted(values)
    n = len(ordered)

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(q * n) - 1)]

    return {"median": rank(0.5), "p99": rank(0.99), "max": ordered[-1], "count": n}


# ---------------------------------------------------------------------------------------------
# Process figures


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_bytes() -> int:
    """Current resident set (VmRSS)."""
    return _status_kib("VmRSS") * 1024


def peak_rss_bytes() -> int:
    """Peak resident set (VmHWM)."""
    return _status_kib("VmHWM") * 1024


def cpu_seconds() -> float:
    """User + system CPU of this process, all threads."""
    return time.process_time()


def machine_cpu_ticks() -> tuple[int, int, int] | None:
    """The machine's busy and total clock ticks since boot and its CPU count, from the `cpu`
    line of /proc/stat (busy: user, nice, system, irq, softirq, steal; total adds idle and
    iowait); None if unreadable."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            lines = stat.read().splitlines()
        fields = [int(field) for field in lines[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    fields += [0] * (8 - len(fields))
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    busy = user + nice + system + irq + softirq + steal
    cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    return busy, busy + idle + iowait, cpus


def machine_cpu_pct(
    before: tuple[int, int, int] | None, after: tuple[int, int, int] | None
) -> float | None:
    """Every process's CPU between two `machine_cpu_ticks`, in % of one core."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1]) * after[2] * 100.0


# ---------------------------------------------------------------------------------------------
# Event loop


def run_on(loop_name: str, main: Callable[[], Awaitable[Any]]) -> Any:
    """Runs `main()` on uvloop (installed the way the reference's AgentPool does) or asyncio."""
    if loop_name == "uvloop":
        from openrtc.runtime.event_loop import use_uvloop

        if not use_uvloop():
            raise RuntimeError("uvloop was asked for but the reference could not install it")
    else:
        asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    return asyncio.run(main())


# ---------------------------------------------------------------------------------------------
# Output and child processes


def emit(document: dict[str, Any]) -> None:
    """Prints the one JSON document of this invocation on stdout."""
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    sys.stdout.flush()


def child_command(subcommand: str, args: Sequence[str]) -> list[str]:
    return [sys.executable, str(HARNESS), subcommand, *args]


def run_child(subcommand: str, args: Sequence[str], timeout: float | None = None) -> dict:
    """Runs `harness.py <subcommand> <args>` in a fresh process and returns its JSON."""
    command = child_command(subcommand, args)
    log.info("child: %s", " ".join(command[1:]))
    done = subprocess.run(
        command, stdout=subprocess.PIPE, stderr=None, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {subcommand} {' '.join(args)} exited {done.returncode}")
    return json.loads(done.stdout)


def private_socket_path(name: str) -> Path:
    """A socket path in a fresh private temp directory."""
    directory = Path(tempfile.mkdtemp(prefix="openrtc-peer-"))
    return directory / f"{name}.sock"


def remove_socket_dir(path: Path | None) -> None:
    if path is None:
        return
    try:
        path.unlink(missing_ok=True)
        path.parent.rmdir()
    except OSError:
        pass


def read_snapshot(path: Path, timeout: float = 5.0) -> dict[str, Any]:
    """One snapshot from the reference's top socket, read with a plain blocking socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        chunks = []
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            if chunk.endswith(b"\n"):
                break
    return json.loads(b"".join(chunks).decode())


# ---------------------------------------------------------------------------------------------
# Slow-session log lines


SLOW_LINE = re.compile(r"\[slow-session\] session_id=(\S+) blocked event loop for (\d+)ms")


class SlowLogCatcher(logging.Handler):
    """Captures the reference's `[slow-session]` warnings (logger "openrtc")."""

    def __init__(self, on_line: Callable[[str | None, float, float], None] | None = None):
        super().__init__(level=logging.WARNING)
        self.count = 0
        self._on_line = on_line

    def emit(self, record: logging.LogRecord) -> None:
        try:
            match = SLOW_LINE.search(record.getMessage())
        except Exception:  # noqa: BLE001 - a log handler must not raise
            return
        if match is None:
            return
        self.count += 1
        if self._on_line is not None:
            sid = None if match.group(1) == "None" else match.group(1)
            self._on_line(sid, float(match.group(2)), time.monotonic())


def install_slow_catcher(
    on_line: Callable[[str | None, float, float], None] | None = None,
) -> SlowLogCatcher:
    catcher = SlowLogCatcher(on_line)
    reference_log = logging.getLogger("openrtc")
    reference_log.addHandler(catcher)
    reference_log.setLevel(logging.INFO)
    # Keep the catcher, but do not print every slow-session line to stderr.
    reference_log.propagate = False
    return catcher


def counts(text: str) -> list[int]:
    """A comma-separated list of positive session counts: `50,100`."""
    parsed = []
    for part in text.split(","):
        value = int(part.strip())
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{part!r} is not a positive count")
        parsed.append(value)
    return parsed


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if not verbose:
        logging.getLogger("peer").setLevel(logging.INFO)


# ---------------------------------------------------------------------------------------------
# The reference's pool, without a LiveKit server


SessionBody = Callable[[str], Awaitable[None]]


class Pool:
    """A reference CoroutinePool whose jobs are fake LiveKit jobs running `body(session_id)`.

    Each job's entrypoint does what the reference's own session wiring does: it binds the
    session id in the reference's contextvar and, with introspection on, tells the
    introspection registry the session started. The body runs in a task created after that,
    so the reference's task factory tags it with the session id (the entrypoint task itself
    is created by the pool before the id is bound, as in the reference, and stays untagged).
    """

    def __init__(
        self,
        body: SessionBody,
        *,
        introspection: bool,
        socket_path: Path | None,
        threshold_ms: float = 50.0,
        max_sessions: int = 100_000,
    ) -> None:
        from livekit.agents import JobExecutorType
        from openrtc.runtime.coroutine_runtime import CoroutinePool

        self.introspection = None
        if introspection:
            from openrtc.observability.introspection_runtime import IntrospectionRuntime

            self.introspection = IntrospectionRuntime(
                socket_path=socket_path, slow_session_threshold_ms=threshold_ms
            )
        self.socket_path = socket_path if introspection else None
        self._body = body
        self.pool = CoroutinePool(
            initialize_process_fnc=lambda _proc: None,
            job_entrypoint_fnc=self._entrypoint,
            session_end_fnc=None,
            num_idle_processes=0,
            initialize_timeout=30.0,
            close_timeout=10.0,
            inference_executor=None,
            job_executor_type=JobExecutorType.THREAD,
            mp_ctx=multiprocessing.get_context("spawn"),
            memory_warn_mb=0,
            memory_limit_mb=0,
            http_proxy=None,
            loop=asyncio.get_running_loop(),
            max_concurrent_sessions=max_sessions,
            consecutive_failure_limit=1_000_000_000,
            introspection=self.introspection,
        )
        self.running: set[str] = set()

    async def start(self) -> None:
        await self.pool.start()

    async def launch(self, session_id: str) -> None:
        from livekit.agents.job import JobAcceptArguments, RunningJobInfo
        from livekit.protocol import agent

        info = RunningJobInfo(
            accept_arguments=JobAcceptArguments(name="", identity="", metadata=""),
            job=agent.Job(id=session_id),
            url="",
            token="",
            worker_id="peer",
            fake_job=True,
        )
        await self.pool.launch_job(info)

    async def _entrypoint(self, ctx: Any) -> None:
        from openrtc.observability.base_observer import SessionInfo
        from openrtc.observability.session_context import set_session_id

        session_id = ctx.job.id
        info = SessionInfo(
            agent_name="peer",
            room_name=f"room-{session_id}",
            job_id=session_id,
            metadata={},
            started_at=time.time(),
        )
        set_session_id(session_id)
        if self.introspection is not None:
            await self.introspection.registry.on_session_start(info, None)  # type: ignore[arg-type]
        self.running.add(session_id)
        try:
            await asyncio.get_running_loop().create_task(self._body(session_id))
        finally:
            self.running.discard(session_id)
            if self.introspection is not None:
                await self.introspection.registry.on_session_end(info, None)  # type: ignore[arg-type]

    async def aclose(self) -> None:
        await self.pool.aclose()
        remove_socket_dir(self.socket_path)
