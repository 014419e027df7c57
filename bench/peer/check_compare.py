"""Checks a `openrtc-bench --json compare` report: every figure has both sides' value, and every
searched (sustainable-sessions) figure has each side's repetitions with their spread."""

import json
import sys

SPREAD_KEYS = ("median", "min", "max", "values")
SEARCHED_SIDES = ("ours", "reference", "reference_asyncio")


def check_spread(row: dict, side: str, repetitions: int, problems: list[str]) -> None:
    spread = row.get(f"{side}_spread")
    figure = row.get("figure")
    if not isinstance(spread, dict) or any(key not in spread for key in SPREAD_KEYS):
        problems.append(f"{figure}: no {side} spread ({', '.join(SPREAD_KEYS)})")
        return
    values = spread["values"]
    if len(values) != repetitions:
        problems.append(f"{figure}: {side} has {len(values)} repetitions, not {repetitions}")
    if not spread["min"] <= spread["median"] <= spread["max"]:
        problems.append(f"{figure}: {side}'s median is outside its spread")
    if row.get(side) != spread["median"]:
        problems.append(f"{figure}: {side}'s figure is not its repetitions' median")


def check_throughput(report: dict, problems: list[str]) -> None:
    throughput = report.get("throughput", {})
    measurements = throughput.get("measurements", [])
    if not measurements:
        problems.append("no throughput measurements")
    for measurement in measurements:
        for key in ("valid", "quiet", "loadavg_1m_before", "loadavg_1m_after", "others_cpu_pct"):
            if key not in measurement:
                problems.append(f"a throughput measurement has no {key}")
                return
    searched = {(s["scenario"], s["side"], s["limit_ms"]) for s in throughput.get("searches", [])}
    for workload in ("cpu", "dsp", "vad"):
        for side in ("ours", "reference", "reference_asyncio"):
            for limit_ms in (20, 100):
                if (f"throughput-{workload}", side, limit_ms) not in searched:
                    problems.append(f"{workload}: {side} was not searched at {limit_ms} ms")
    if ("throughput-dsp", "ours_interval", 20) not in searched:
        problems.append("dsp: ours with intervals was not searched")


def main(path: str) -> int:
    with open(path, encoding="utf-8") as report_file:
        report = json.load(report_file)
    problems = []
    if report.get("benchmark") != "compare":
        problems.append(f"not a compare report: {report.get('benchmark')!r}")
    rows = report.get("rows", [])
    if len(rows) < 20:
        problems.append(f"only {len(rows)} figures")
    repetitions = report.get("repetitions", 0)
    for row in rows:
        for side in ("ours", "reference"):
            if not isinstance(row.get(side), (int, float)):
                problems.append(f"{row.get('figure')}: no {side} value")
        if row["figure"].startswith(("cpu:", "dsp:", "vad:")):
            if not isinstance(row.get("reference_asyncio"), (int, float)):
                problems.append(f"{row['figure']}: no asyncio value")
            # Every throughput figure is repeated on each side.
            for side in SEARCHED_SIDES:
                check_spread(row, side, repetitions, problems)
    searched = [row for row in rows if row.get("searched")]
    # Sustainable sessions at 20 and 100 ms, for cpu, dsp and vad.
    if len(searched) != 6:
        problems.append(f"{len(searched)} searched figures, not 6")
    for row in searched:
        if "sustainable sessions" not in row["figure"]:
            problems.append(f"{row['figure']}: searched but not a sustainable-sessions figure")
    for figure in report.get("ours_only", []):
        # A percentage of a limit has no value when the limit is 0 (nothing held).
        if "%" not in figure.get("figure", "") and not isinstance(figure.get("value"), (int, float)):
            problems.append(f"{figure.get('figure')}: no value")
    check_throughput(report, problems)
    # Introspection's overhead counted in instructions (ours alone, one value per round).
    instruction_figures = [
        figure for figure in report.get("ours_only", []) if "instructions per frame" in figure.get("figure", "")
    ]
    if len(instruction_figures) != 3:
        problems.append(f"{len(instruction_figures)} instruction-count figures, not 3")
    for figure in instruction_figures:
        value = figure.get("value")
        # A ratio of two counts of instructions per frame (a tiny run's few frames leave
        # start-up's variation in it: only its existence is checked).
        if not isinstance(value, (int, float)) or not value > 0:
            problems.append(f"{figure.get('figure')}: {value!r} is not a ratio of two counts")
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
        print(
            f"compare check: {len(rows)} figures, both sides, every scenario; "
            f"{len(searched)} searched, {repetitions} repetition(s) each"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
