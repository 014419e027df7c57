#!/usr/bin/env python3
"""Entry point of the peer harness: `python harness.py <subcommand> [options]`.

Measures the Python reference (PyPI `openrtc`) on the scenarios of `openrtc-bench` and
prints one JSON document on stdout. Run it with the python that `bench/peer/setup` prints."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peer.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
