#!/usr/bin/env python3
"""tools/transfer_report.py picks the most accurate fixed freezing at equal time.

Builds bench run folders (MODEL.RUN.SEED/summary.json) with known accuracies
and times and checks the report's equal-time row: the criterion is compared
with the most accurate K whose time is at most its own (2 % slack), never
with a slower K while one as fast exists; and a run renamed with --label
whose bench name holds "=" itself (none(epochs=3,...)) is shown under its
new name and, named budget..., is not compared as a criterion; for a stream,
the accuracy after each part is the mean of each seed's last evaluation in
that part.

usage: transfer_report.py SOURCE_DIR
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

# run -> (test accuracy, train seconds), the same for both seeds
RUNS = {
    "full": (0.880, 100.0),
    "cka": (0.875, 60.0),            # 1.67x, -0.5
    "freeze3": (0.882, 80.0),        # slower than cka: not at equal time
    "freeze4": (0.873, 61.0),        # within 2 %: at equal time, -0.7
    "freeze5": (0.870, 50.0),        # faster, less accurate: -1.0
    "none(epochs=3,epochs=15,eval_every=3)": (0.860, 70.0),
}


def main() -> int:
    source = Path(sys.argv[1])
    with tempfile.TemporaryDirectory() as tmp:
        bench = Path(tmp) / "bench"
        for run, (acc, sec) in RUNS.items():
            for seed in (1, 2):
                d = bench / f"resnet18.{run}.{seed}"
                d.mkdir(parents=True)
                (d / "summary.json").write_text(json.dumps({"test_accuracy": acc, "train_seconds": sec}))
                # a stream of 2 parts: the last evaluation of each part counts (0.6 / 0.7 after part 1)
                evals = [(1, 0.1), (1, 0.5 + 0.1 * seed), (1, None), (2, acc)]
                (d / "metrics.jsonl").write_text("".join(
                    json.dumps({"arrival": a, "test_accuracy": t}) + "\n" for a, t in evals))
        out = subprocess.run(
            [sys.executable, str(source / "tools/transfer_report.py"), str(bench), "--out", str(Path(tmp) / "rep"),
             "--label", "bench:none(epochs=3,epochs=15,eval_every=3)=budget-3ep"],
            capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stdout, out.stderr)
            return 1
        text = out.stdout
        rows = [l for l in text.splitlines() if l.startswith("| bench | ")]
        errors = []
        cka = [l for l in rows if l.startswith("| bench | cka | ") and "freeze" in l]
        if len(cka) != 1 or "| freeze4 (1.64x) | -0.70 | +0.20 |" not in cka[0]:
            errors.append("cka's equal-time row should name freeze4 (1.64x) at -0.70, +0.20 ahead: %r" % cka)
        if not any(l.startswith("| bench | budget-3ep | 2 | 86.00 | -2.00 |") for l in rows):
            errors.append("the renamed run budget-3ep is not in the table")
        if any("none(epochs" in l for l in rows):
            errors.append("the run was not renamed (its name holds '=')")
        if any(l.startswith("| bench | budget-3ep |") and "freeze" in l for l in rows):
            errors.append("a budget run was compared as a criterion")
        if "| bench | cka | 65.00 | 87.50 |" not in text:
            errors.append("the per-part table should show cka at 65.00 after part 1 (the mean of each seed's last "
                          "evaluation, 60 and 70) and 87.50 after part 2")
        for e in errors:
            print("transfer_report: " + e)
        if errors:
            print(text)
        return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
