"""Checks a `openrtc-bench --json compare` report: every figure has both sides' value."""

import json
import sys


def main(path: str) -> int:
    with open(path, encoding="utf-8") as report_file:
        report = json.load(report_file)
    problems = []
    if report.get("benchmark") != "compare":
        problems.append(f"not a compare report: {report.get('benchmark')!r}")
    rows = report.get("rows", [])
    if len(rows) < 20:
        problems.append(f"only {len(rows)} figures")
    for row in rows:
        for side in ("ours", "reference"):
            if not isinstance(row.get(side), (int, float)):
                problems.append(f"{row.get('figure')}: no {side} value")
        if row["figure"].startswith(("cpu:", "dsp:", "vad:")) and not isinstance(
            row.get("reference_asyncio"), (int, float)
        ):
            problems.append(f"{row['figure']}: no asyncio value")
    # The reference's own workload (a Silero VAD stream per session) must be compared.
    if not any(str(row.get("figure", "")).startswith("vad:") for row in rows):
        problems.append("no vad figures")
    sides = {(run["scenario"], run["side"]) for run in report.get("runs", [])}
    for scenario in {run["scenario"] for run in report.get("runs", [])}:
        for side in ("ours", "reference"):
            if (scenario, side) not in sides:
                problems.append(f"{scenario}: {side} did not run")
    for problem in problems:
        print(f"compare check: {problem}", file=sys.stderr)
    if not problems:
        print(f"compare check: {len(rows)} figures, both sides, every scenario")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
