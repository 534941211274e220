#!/usr/bin/python3
"""Plots of a suite report (called by `ldrop suite report`).

Usage: plot_suite.py PLOT_DATA.json OUT_DIR

One figure per report row (model, data set, setting, policy):
- time to accuracy: test accuracy against cumulative training time (cache
  builds included, evaluation excluded) of every seed's full training
  (dashed), drop run (solid) and budget-matched full training (dotted), with
  each curve's final point averaged over seeds (± std);
- the cut (stages dropped) over the epochs of the drop runs;
- for a stream (epochs with an `arrival`): the test accuracy after each
  arrival, mean over seeds (± std), of every kind of run.
Prints the PNG file names it wrote. Needs python3-matplotlib (Debian).
"""
import json
import os
import re
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

KINDS = (  # key, legend name, line style, colour
    ("full", "full training", "--", "tab:gray"),
    ("drop", None, "-", "tab:blue"),
    ("budget", "full training, budget-matched", ":", "tab:orange"),
    ("freeze", "fixed partial freezing", "-.", "tab:green"),
)


def slug(text):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def points(run):
    """(cumulative training seconds, test accuracy %) at the evaluated epochs."""
    out, total = [], 0.0
    for e in run["epochs"]:
        total = e.get("train_seconds_total", total + e.get("train_seconds", e.get("epoch_seconds", 0.0)))
        if e.get("test_accuracy") is not None:
            out.append((total, 100.0 * e["test_accuracy"]))
    return out


def arrival_points(run):
    """{arrival: test accuracy %} after the last epoch of each arrival."""
    out = {}
    for e in run["epochs"]:
        if e.get("arrival") is not None and e.get("test_accuracy") is not None:
            out[e["arrival"]] = 100.0 * e["test_accuracy"]
    return out


def main():
    data_file, out_dir = sys.argv[1], sys.argv[2]
    with open(data_file) as f:
        rows = json.load(f)
    written = []
    for row in rows:
        stream = any(arrival_points(r) for r in row.get("drop", []))
        if stream:
            fig, (acc_ax, cut_ax, arr_ax) = plt.subplots(1, 3, figsize=(16, 4.2),
                                                         gridspec_kw={"width_ratios": [3, 2, 2]})
        else:
            fig, (acc_ax, cut_ax) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [3, 2]})
        for key, name, style, colour in KINDS:
            runs = row.get(key, [])
            if not runs:
                continue
            label = name or row["policy"]
            finals = []
            for i, run in enumerate(runs):
                pts = points(run)
                if not pts:
                    continue
                acc_ax.plot([p[0] for p in pts], [p[1] for p in pts], style, color=colour, alpha=0.45, linewidth=1,
                            label=label if i == 0 else None)
                finals.append(pts[-1])
            if finals:
                t = [p[0] for p in finals]
                a = [p[1] for p in finals]
                sd = statistics.stdev(a) if len(a) > 1 else 0.0
                st = statistics.stdev(t) if len(t) > 1 else 0.0
                acc_ax.errorbar([statistics.mean(t)], [statistics.mean(a)], xerr=[st], yerr=[sd], fmt="o",
                                color=colour, capsize=3, markersize=6)
                acc_ax.annotate("%.2f%%" % statistics.mean(a), (statistics.mean(t), statistics.mean(a)),
                                textcoords="offset points", xytext=(6, -12), fontsize=8, color=colour)
        for run in row.get("drop", []):
            epochs = run["epochs"]
            if epochs:
                cut_ax.step([0] + [e["epoch"] for e in epochs], [0] + [e["cut"] for e in epochs], where="post",
                            alpha=0.7, label=run["label"])
        if stream:
            for key, name, style, colour in KINDS:
                per = {}
                for run in row.get(key, []):
                    for k, a in arrival_points(run).items():
                        per.setdefault(k, []).append(a)
                if not per:
                    continue
                ks = sorted(per)
                means = [statistics.mean(per[k]) for k in ks]
                sds = [statistics.stdev(per[k]) if len(per[k]) > 1 else 0.0 for k in ks]
                arr_ax.errorbar(ks, means, yerr=sds, fmt="o" + style, color=colour, capsize=3, markersize=4,
                                label=name or row["policy"])
            arr_ax.set_xlabel("arrivals (parts of the training set)")
            arr_ax.set_ylabel("test accuracy [%]")
            arr_ax.set_title("accuracy after each arrival", fontsize=10)
            arr_ax.grid(alpha=0.3)
            arr_ax.legend(fontsize=7, loc="lower right")
        title = "%s on %s, %s" % (row["model"], row["dataset"], row["policy"])
        if row.get("setting"):
            title += " (%s)" % row["setting"]
        acc_ax.set_xlabel("training time [s]")
        acc_ax.set_ylabel("test accuracy [%]")
        acc_ax.set_title(title + ": time to accuracy", fontsize=10)
        acc_ax.grid(alpha=0.3)
        acc_ax.legend(fontsize=8, loc="lower right")
        cut_ax.set_xlabel("epoch")
        cut_ax.set_ylabel("stages dropped (cut)")
        cut_ax.set_title("cut over the epochs", fontsize=10)
        cut_ax.grid(alpha=0.3)
        if cut_ax.get_legend_handles_labels()[0]:
            cut_ax.legend(fontsize=7)
        fig.tight_layout()
        parts = [row["model"], row["dataset"], row["policy"]] + ([row["setting"]] if row.get("setting") else [])
        name = slug("_".join(parts)) + ".png"
        fig.savefig(os.path.join(out_dir, name), dpi=90)
        plt.close(fig)
        written.append(name)
    for name in written:
        print(name)


if __name__ == "__main__":
    main()
