#!/usr/bin/env python3
"""Compares the runs of two folders written by tools/refactor_runs.sh.

For each run in both: metrics.jsonl line by line and the decisions of
stats.jsonl, every field but timing (seconds, speeds, I/O waits and what
is computed from them), and summary.json's results. Prints one line per run
and exits 1 when any differs, naming the first field that does.

    tools/compare_runs.py BEFORE AFTER
"""
import json
import math
import sys
from pathlib import Path

# Keys that measure time (or are derived from it): they differ run to run.
TIMING = ("seconds", "per_second", "speed", "wait", "gflop", "wall", "started", "finished", "time",
          "hostname", "host", "pid", "allocator", "predicted")


def timing(key):
    k = key.lower()
    return any(t in k for t in TIMING)


def strip(value):
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if not timing(k)}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


def first_difference(a, b, where=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{where}.{k}: only in {'after' if k not in a else 'before'}"
            d = first_difference(a[k], b[k], f"{where}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} items before, {len(b)} after"
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, f"{where}[{i}]")
            if d:
                return d
        return None
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return None
    return None if a == b else f"{where}: {a!r} before, {b!r} after"


def lines(path):
    return [strip(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def compare(before, after):
    for name in ("metrics.jsonl", "stats.jsonl"):
        if not (before / name).exists():
            continue
        d = first_difference(lines(before / name), lines(after / name), name)
        if d:
            return d
    summary = [strip(json.loads((p / "summary.json").read_text())) for p in (before, after)]
    for s in summary:  # where the run was and what it ran on
        for k in ("out", "run_dir", "config_file", "command", "resumes", "checkpoints"):
            s.pop(k, None)
    return first_difference(summary[0], summary[1], "summary.json")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    before, after = Path(sys.argv[1]), Path(sys.argv[2])
    runs = sorted(p.name for p in before.iterdir() if (p / "summary.json").exists())
    if not runs:
        sys.exit(f"compare_runs: no finished run in {before}")
    bad = 0
    for run in runs:
        if not (after / run / "summary.json").exists():
            print(f"{run:12} missing in {after}")
            bad += 1
            continue
        d = compare(before / run, after / run)
        n = len((before / run / "metrics.jsonl").read_text().splitlines())
        print(f"{run:12} {'identical' if d is None else 'DIFFERS'} ({n} epochs){'' if d is None else ': ' + d}")
        bad += d is not None
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
