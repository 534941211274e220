#!/usr/bin/python3
"""Prefix sharing in suites: the same suite run with and without it.

Copies SUITE twice into OUT (its base made absolute, its output OUT/shared and
OUT/plain), runs `ldrop suite run` on the first and `ldrop suite run
--no-share` on the second, one after the other on the same machine, and
prints each run's result in both, whether they are equal (timing and I/O
counters aside) and the wall-time ratio.

  /usr/bin/python3 tools/bench/suite_share.py configs/paper/criteria-share.yaml --jobs 2
"""
import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time

import yaml

TIMING = {"epoch_seconds", "train_seconds", "train_seconds_total", "images_per_second", "cache_wait_seconds",
          "cache_read_bytes", "wall_seconds", "cache_build_seconds", "checkpoint_seconds",
          "predicted_saving_seconds", "full_images_per_second", "self_speedup", "measured_saving_seconds",
          "cache_seconds", "resumes", "branched_from", "cache"}


def strip(j):
    if isinstance(j, dict):
        return {k: strip(v) for k, v in j.items() if k not in TIMING}
    if isinstance(j, list):
        return [strip(v) for v in j]
    return j


def copy_suite(src, out, name):
    with open(src) as f:
        suite = yaml.safe_load(f)
    folder = os.path.dirname(os.path.abspath(src))
    if isinstance(suite.get("base"), str):
        suite["base"] = os.path.join(folder, suite["base"])
    suite["output"] = os.path.join(out, name)
    path = os.path.join(out, name + ".yaml")
    with open(path, "w") as f:
        yaml.safe_dump(suite, f, sort_keys=False)
    return path


def results(db):
    """label -> (summary, [epoch metrics]) of the finished runs in results.db."""
    con = sqlite3.connect("file:" + db + "?mode=ro", uri=True)
    out = {}
    for run_id, label, summary in con.execute("SELECT id, label, summary FROM runs WHERE status = 'finished'"):
        epochs = [json.loads(m) for (m,) in
                  con.execute("SELECT metrics FROM epochs WHERE run_id = ? ORDER BY epoch", (run_id,))]
        out[label] = (json.loads(summary), epochs)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suite")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="bench-runs/suite-share")
    ap.add_argument("--ldrop", default="build/bin/ldrop")
    ap.add_argument("--compare-only", action="store_true", help="compare the two suites OUT holds, run nothing")
    a = ap.parse_args()
    out = os.path.abspath(a.out)
    wall = {}
    if a.compare_only:
        with open(os.path.join(out, "wall.json")) as f:
            wall = json.load(f)
    else:
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
    for name, extra in () if a.compare_only else (("shared", []), ("plain", ["--no-share"])):
        suite = copy_suite(a.suite, out, name)
        start = time.monotonic()
        with open(os.path.join(out, name + ".log"), "w") as log:
            code = subprocess.call([a.ldrop, "suite", "run", suite, "--jobs", str(a.jobs)] + extra, stdout=log,
                                   stderr=subprocess.STDOUT)
        wall[name] = time.monotonic() - start
        print(f"{name}: exit {code}, {wall[name]:.0f} s (log {out}/{name}.log)", flush=True)
        if code != 0:
            sys.exit(f"suite run ({name}) failed")
        with open(os.path.join(out, "wall.json"), "w") as f:
            json.dump(wall, f)
    shared, plain = results(os.path.join(out, "shared", "results.db")), results(os.path.join(out, "plain", "results.db"))
    print()
    print("| run | branched at epoch | test accuracy % | drops | equal to the run from the start |")
    print("| --- | --- | --- | --- | --- |")
    equal = 0
    for label in sorted(plain):
        s, p = shared.get(label, ({}, []))[0], plain[label][0]
        same = strip(list(shared.get(label, ({}, [])))) == strip(list(plain[label]))  # the summary and every epoch's metrics
        equal += same
        b = s.get("branched_from")
        drops = ", ".join(f"{d.get('from_cut', '?')}->{d.get('to_cut', '?')} {d.get('mode', '')} @{d.get('epoch', 0):g}" for d in s.get("drops", []))
        print(f"| {label} | {b['epoch'] if b else '-'} | {100 * s.get('test_accuracy', 0):.2f} | {drops or 'none'} | "
              f"{'yes' if same else 'NO'} |")
    print()
    print(f"{equal} of {len(plain)} runs equal; wall time {wall['shared']:.0f} s shared, {wall['plain']:.0f} s "
          f"from the start: {wall['plain'] / wall['shared']:.2f}x")
    sys.exit(0 if equal == len(plain) else 1)


if __name__ == "__main__":
    main()
