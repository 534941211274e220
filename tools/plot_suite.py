#!/usr/bin/python3
"""Plots of a suite report (called by `ldrop suite report`).

Usage: plot_suite.py PLOT_DATA.json OUT_DIR

For every model and data set: test accuracy against cumulative training wall
time, one line per run (full training dashed, drop policies solid), and the
cut (stages dropped) over the epochs. Prints the PNG file names it wrote.
Needs python3-matplotlib (Debian).
"""
import json
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def slug(text):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def main():
    data_file, out_dir = sys.argv[1], sys.argv[2]
    with open(data_file) as f:
        runs = json.load(f)
    groups = {}
    for run in runs:
        groups.setdefault((run["model"], run["dataset"]), []).append(run)
    written = []
    for (model, dataset), members in sorted(groups.items()):
        members.sort(key=lambda r: (not r["is_baseline"], r["policy"], r["seed"]))
        fig, (acc_ax, cut_ax) = plt.subplots(1, 2, figsize=(11, 4))
        for run in members:
            epochs = run["epochs"]
            if not epochs:
                continue
            wall, t = [], 0.0
            for e in epochs:
                t += e.get("epoch_seconds", 0.0)
                wall.append(t)
            acc = [100.0 * e["test_accuracy"] for e in epochs]
            style = "--" if run["is_baseline"] else "-"
            name = "%s, seed %s" % (run["policy"], run["seed"])
            acc_ax.plot(wall, acc, style, marker="o", markersize=3, label=name)
            if not run["is_baseline"]:
                cut_ax.step([e["epoch"] for e in epochs], [e["cut"] for e in epochs], where="post", label=name)
        acc_ax.set_xlabel("training wall time [s]")
        acc_ax.set_ylabel("test accuracy [%]")
        acc_ax.set_title("%s on %s: accuracy vs time" % (model, dataset))
        acc_ax.grid(alpha=0.3)
        acc_ax.legend(fontsize=7)
        cut_ax.set_xlabel("epoch")
        cut_ax.set_ylabel("stages dropped (cut)")
        cut_ax.set_title("cut over epochs")
        cut_ax.grid(alpha=0.3)
        if cut_ax.get_legend_handles_labels()[0]:
            cut_ax.legend(fontsize=7)
        fig.tight_layout()
        name = "%s_%s.png" % (slug(model), slug(dataset))
        fig.savefig(os.path.join(out_dir, name), dpi=90)
        plt.close(fig)
        written.append(name)
    for name in written:
        print(name)


if __name__ == "__main__":
    main()
