"""The command line: `harness.py <subcommand> [options]`, one JSON document on stdout."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import sys

from . import attribution, common, density, overhead, throughput

MODULES = {
    "throughput": throughput,
    "overhead": overhead,
    "attribution": attribution,
    "density": density,
}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="harness.py",
        description="Benchmarks of the Python reference (openrtc on PyPI), shaped like "
        "openrtc-bench's JSON. Logs go to stderr; one JSON document to stdout.",
    )
    subs = top.add_subparsers(dest="command", required=True)
    for name, module in MODULES.items():
        sub = subs.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        module.add_arguments(sub)
        sub.add_argument(
            "--loop",
            choices=["uvloop", "asyncio"],
            default="uvloop",
            help="event loop (default uvloop, as the reference's AgentPool)",
        )
        sub.add_argument("--verbose", action="store_true", help="log at INFO to stderr")
        sub.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return top


def host_facts(load_before: tuple[float, float, float]) -> dict:
    """What to know about the machine to judge the figures (load from other work skews them)."""
    try:
        reference = importlib.metadata.version("openrtc")
    except importlib.metadata.PackageNotFoundError:
        reference = None
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "reference_version": reference,
        "loadavg_1m_before": load_before[0],
        "loadavg_1m_after": os.getloadavg()[0],
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
    }


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    common.setup_logging(args.verbose)
    load_before = os.getloadavg()
    document = MODULES[args.command].run(args)
    if document is not None:  # a child that streams events prints no document
        document["host"] = host_facts(load_before)
        common.emit(document)
    return 0


if __name__ == "__main__":
    sys.exit(main())
