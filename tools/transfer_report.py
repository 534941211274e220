#!/usr/bin/python3
"""Trade-off report of the transfer suite (issue 29, docs/transfer.md).

Reads the fine-tuning runs of configs/paper/transfer.yaml (and any run
folders of tools/bench/transfer.py given after it) and prints, per model:
every criterion and every fixed freezing K with its test accuracy (mean over
seeds), its difference to full training and its time relative to the full
run of the same seed; then for each criterion the most accurate fixed
freezing K whose relative time is at most the criterion's (equal time), and
the issue's targets; for runs of a stream, the test accuracy after each
part. Writes tradeoff-<model>.png (accuracy against relative
time) next to the table when python3-matplotlib is installed.

  /usr/bin/python3 tools/transfer_report.py runs/transfer-fit [bench-runs/transfer-*] [--out DIR]
  /usr/bin/python3 tools/transfer_report.py bench-runs/transfer-online-* --setting "training online (class order)"

Times of one suite are taken with its --jobs runs beside each other: the
relative time of a run is against its own seed's full run of the same
folder, never against another folder's.
"""
import argparse
import collections
import glob
import json
import os
import re
import statistics


def is_fixed(run):
    """A fixed freezing run (freeze_all3, freeze3, ...), not a criterion whose name starts alike (freeze-probe)."""
    return re.match(r"freeze(_all)?\d+$", run) is not None


def label_of(folder):
    """(model, run, seed) from a suite run folder or a bench run folder name."""
    name = os.path.basename(folder.rstrip("/"))
    m = re.match(r"finetune\.([^.]+)\.(.+)\.(\d+)(?:\.(\w+))?-[0-9a-f]{8}$", name)
    if m:
        model, run, seed, extra = m.groups()
        return model, extra if extra else run, seed
    m = re.match(r"([^.]+)\.(.+)\.(\d+)$", name)  # bench: MODEL.RUN.SEED
    if m:
        return m.groups()
    return None


def arrival_accuracies(path):
    """[test accuracy % after each arrival] of a stream run (its last evaluation in each), [] otherwise."""
    last = {}
    if os.path.exists(path):
        for line in open(path):
            m = json.loads(line)
            if m.get("arrival") is not None and m.get("test_accuracy") is not None:
                last[m["arrival"]] = 100 * m["test_accuracy"]
    return [last[k] for k in sorted(last)]


def load(source):
    folders = glob.glob(os.path.join(source, "runs", "finetune.*")) or glob.glob(os.path.join(source, "*"))
    runs = []
    for f in sorted(folders):
        lab = label_of(f)
        path = os.path.join(f, "summary.json")
        if not lab or not os.path.exists(path):
            continue
        s = json.load(open(path))
        model, run, seed = lab
        runs.append({"source": source, "model": model, "run": run, "seed": seed,
                     "accuracy": 100 * s["test_accuracy"], "seconds": s["train_seconds"],
                     "arrivals": arrival_accuracies(os.path.join(f, "metrics.jsonl"))})
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sources", nargs="+", help="suite output folder(s) and bench-runs/transfer-* folders")
    ap.add_argument("--out", default=None, help="where table.md and the plots go (default: SOURCE/transfer-report)")
    ap.add_argument("--setting", default="fine-tuning",
                    help="what the runs did, for the plots' titles (e.g. 'training online (class order)')")
    ap.add_argument("--label", action="append", default=[],
                    help="suite:RUN=NAME or bench:RUN=NAME (split at the last =): show a run under another name (e.g. suite runs made "
                         "with older defaults), repeatable")
    a = ap.parse_args()
    rename = dict(x.rsplit("=", 1) for x in a.label)  # a bench run name may hold "=" itself
    out = a.out or os.path.join(a.sources[0], "transfer-report")
    os.makedirs(out, exist_ok=True)
    rows = collections.defaultdict(list)  # (model, source label, run) -> [(acc diff, rel time, acc)]
    parts = collections.defaultdict(list)  # the same key -> [[accuracy after each arrival] per seed]
    for source in a.sources:
        runs = load(source)
        full = {(r["model"], r["seed"]): r for r in runs if r["run"] == "full"}
        tag = "suite" if os.path.isdir(os.path.join(source, "runs")) else "bench"
        for r in runs:
            f = full.get((r["model"], r["seed"]))
            if not f:
                continue
            key = (r["model"], tag, rename.get(tag + ":" + r["run"], r["run"]))
            rows[key].append((r["accuracy"] - f["accuracy"], r["seconds"] / f["seconds"], r["accuracy"]))
            parts[key].append(r["arrivals"])
    lines = []
    for model in sorted({k[0] for k in rows}):
        lines += ["## " + model, "",
                  "| source | run | seeds | test accuracy % | vs full [points] | time / full | speedup |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        keys = sorted((k for k in rows if k[0] == model), key=lambda k: (k[1], statistics.mean(x[1] for x in rows[k])))
        points = []
        for k in keys:
            v = rows[k]
            diff = statistics.mean(x[0] for x in v)
            rel = statistics.mean(x[1] for x in v)
            acc = statistics.mean(x[2] for x in v)
            lines.append("| %s | %s | %d | %.2f | %+.2f | %.2f | %.2fx |" % (k[1], k[2], len(v), acc, diff, rel, 1 / rel))
            points.append((k[1], k[2], diff, rel))
        n = max((len(p) for k in keys for p in parts[k]), default=0)
        streams = [k for k in keys if all(len(p) == n for p in parts[k])] if n else []
        if streams:
            lines += ["", "Test accuracy % after each part (mean over seeds):", "",
                      "| source | run | " + " | ".join("part %d" % (i + 1) for i in range(n)) + " |",
                      "| --- | --- |" + " --- |" * n]
            for k in streams:
                lines.append("| %s | %s | %s |" % (k[1], k[2], " | ".join(
                    "%.2f" % statistics.mean(p[i] for p in parts[k]) for i in range(n))))
        lines += ["", "Against the most accurate fixed freezing at equal time (K with time / full at most the "
                  "criterion's, from the same source):", "",
                  "| source | criterion | vs full [points] | speedup | best K at equal time | its vs full [points] "
                  "| criterion − fixed [points] | targets (≥ 1.5x, within 0.5 point, ≥ fixed) |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for src, run, diff, rel in points:
            if run == "full" or is_fixed(run) or run in ("probe",) or run.startswith("budget"):
                continue
            fixed = [(d, r, n) for s, n, d, r in points if s == src and (is_fixed(n) or n == "full")
                     and r <= rel * 1.02]
            slower = ""
            if not fixed:  # no K is as fast: the fastest one, which still takes longer
                fixed = [min(((d, r, n) for s, n, d, r in points if s == src and is_fixed(n)),
                             key=lambda x: x[1])]
                slower = ", slower"
            d, r, n = max(fixed)
            met = []
            met.append("speed " + ("yes" if 1 / rel >= 1.5 else "no"))
            met.append("accuracy " + ("yes" if diff >= -0.5 else "no"))
            met.append("vs fixed " + ("yes" if diff >= d else "no"))
            lines.append("| %s | %s | %+.2f | %.2fx | %s (%.2fx%s) | %+.2f | %+.2f | %s |" % (
                src, run, diff, 1 / rel, n, 1 / r, slower, d, diff - d, ", ".join(met)))
        lines.append("")
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            fig, ax = plt.subplots(figsize=(7, 4.5))
            for src, marker in (("suite", "o"), ("bench", "s")):
                pts = [(1 / r, d, n) for s, n, d, r in points if s == src]
                fx = sorted((x, y) for x, y, n in pts if is_fixed(n) or n == "full")
                if fx:
                    ax.plot([x for x, _ in fx], [y for _, y in fx], marker + ":", color="tab:gray",
                            label="fixed freezing K (%s)" % src)
                for x, y, n in pts:
                    if is_fixed(n) or n == "full" or n == "probe" or n.startswith("budget"):
                        continue
                    ax.plot([x], [y], marker, markersize=8)
                    ax.annotate(n, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
            ax.axhline(-0.5, color="tab:red", lw=0.8, ls="--")
            ax.axvline(1.5, color="tab:red", lw=0.8, ls="--")
            ax.set_xlabel("speedup against full training of the same seed")
            ax.set_ylabel("test accuracy − full training [points]")
            ax.set_title("%s: %s from a backbone that fits (mean of seeds)" % (model, a.setting))
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
            png = os.path.join(out, "tradeoff-%s.png" % model)
            fig.tight_layout()
            fig.savefig(png, dpi=110)
            plt.close(fig)
            lines += ["![%s](%s)" % (model, os.path.basename(png)), ""]
        except ImportError:
            pass
    text = "\n".join(lines)
    open(os.path.join(out, "table.md"), "w").write(text)
    print(text)
    print("written to " + out)


if __name__ == "__main__":
    main()
