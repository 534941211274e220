#!/usr/bin/python3
"""Fine-tuning speed where the backbone fits (issue 29, docs/transfer.md).

For each model and seed, trains back to back on this machine, one run at a
time: full fine-tuning (policy none), then each criterion and each fixed
freezing K given, from the pretrained runs of the transfer suite
(configs/paper/transfer.yaml, stage pretrain). Prints per run its accuracy,
training time and the ratio against the full run of the same seed that ran
next to it, then the means over seeds. Separate runs here drift by up to
+-20 %: the ratio is taken within a seed's group, never across groups.

  LEARNDROP_DATA=../shared/data /usr/bin/python3 tools/bench/transfer.py runs/transfer-fit \\
      [--models resnet18,vgg11_bn] [--seeds 1,2,3] [--threads 2] \\
      [--run cka] [--run "cka:policy.start_threshold=0.99"] [--freeze 2,3] [--online shuffle|classes] \
      [--set model.head=probe]

--set applies to every run, full training included. LDROP names another
ldrop executable (a copy, so that a rebuild does not replace it mid-bench).

Writes the runs and table.md under bench-runs/transfer-DATE/.
"""
import argparse
import datetime
import glob
import json
import os
import statistics
import subprocess
import sys

NETS = {
    "resnet18": ["model.plugin=resnet", "model.variant=resnet18", "model.stem=cifar", "model.width=0.25"],
    "vgg11_bn": ["model.plugin=vgg", "model.variant=vgg11_bn", "model.width=0.25", "model.classifier=compact"],
}
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_run(text):
    """'cka:policy.start_threshold=0.99,policy.patience=2' -> (label, policy, [sets])."""
    policy, _, rest = text.partition(":")
    sets = [s for s in rest.split(",") if s]
    label = policy + ("(" + ",".join(s.split(".", 1)[-1] for s in sets) + ")" if sets else "")
    return label, ["policy.plugin=" + policy] + sets


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("suite_output", help="output folder of configs/paper/transfer.yaml (holds runs/pretrain.*)")
    ap.add_argument("--models", default="resnet18,vgg11_bn")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--threads", default="2")
    ap.add_argument("--run", action="append", default=[], help="POLICY[:KEY=V,...], repeatable (default: cka)")
    ap.add_argument("--freeze", default="", help="fixed freezing K values to run, e.g. 2,3")
    ap.add_argument("--set", action="append", default=[], dest="sets",
                    help="KEY=V for every run, full training included (repeatable), e.g. model.head=probe")
    ap.add_argument("--online", choices=["shuffle", "classes"], default=None,
                    help="the suite's online stage instead: the classes arrive in 5 parts, 4 epochs after each")
    a = ap.parse_args()
    runs = [parse_run(r) for r in (a.run or ["cka"])]
    runs += [("freeze%s" % k, ["policy.plugin=none", "model.freeze=%s" % k]) for k in a.freeze.split(",") if k]
    ldrop = os.environ.get("LDROP") or os.path.join(ROOT, "build", "bin", "ldrop")
    config = os.path.join(ROOT, "configs", "transfer", "finetune-cifar5.yaml")
    online = []
    if a.online:  # as configs/paper/transfer.yaml's online stage
        online = ["stream.parts=5", "stream.epochs=4", "train.epochs=20", "train.lr=0.05", "train.eval_every=4",
                  "stream.order=" + a.online]
    out = os.path.join(ROOT, "bench-runs", "transfer-" + ("online-" if a.online else "") +
                       datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out, exist_ok=True)
    rows = []
    for model in a.models.split(","):
        found = glob.glob(os.path.join(a.suite_output, "runs", "pretrain.%s-*" % model))
        if len(found) != 1 or not os.path.exists(os.path.join(found[0], "model.pt")):
            sys.exit("transfer.py: no finished pretrain.%s run in %s/runs (run the suite's pretrain stage)"
                     % (model, a.suite_output))
        for seed in a.seeds.split(","):
            group = {}
            for label, sets in [("full", ["policy.plugin=none"])] + runs:
                folder = os.path.join(out, "%s.%s.%s" % (model, label, seed))
                cmd = [ldrop, "run", config, "--out", folder, "--quiet"]
                for s in NETS[model] + ["model.weights=" + found[0], "experiment.seed=" + seed,
                                        "runtime.threads=" + a.threads] + online + a.sets + sets:
                    cmd += ["--set", s]
                print("%s seed %s: %s" % (model, seed, label), flush=True)
                r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                if r.returncode != 0:
                    sys.exit("transfer.py: %s failed (exit %d):\n%s" % (folder, r.returncode, r.stdout[-3000:]))
                s = json.load(open(os.path.join(folder, "summary.json")))
                group[label] = s
                drops = s.get("drops") or []
                first = drops[0] if drops else {}
                rows.append({"model": model, "run": label, "seed": seed,
                             "accuracy": 100 * s["test_accuracy"], "seconds": s["train_seconds"],
                             "speedup": group["full"]["train_seconds"] / s["train_seconds"],
                             "stages": s["dropped_stages"], "drop_epoch": first.get("epoch", "-"),
                             "mode": first.get("mode", "-")})
    lines = ["| model | run | seed | test accuracy % | train time [s] | speedup vs full (same seed, run beside it) "
             "| stages frozen | first drop epoch | mode |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append("| %s | %s | %s | %.2f | %.1f | %.2fx | %s | %s | %s |" % (
            r["model"], r["run"], r["seed"], r["accuracy"], r["seconds"], r["speedup"], r["stages"],
            r["drop_epoch"], r["mode"]))
    lines += ["", "Means over seeds (accuracy difference and speedup against full training of the same seed):", "",
              "| model | run | test accuracy % | vs full [points] | speedup |", "| --- | --- | --- | --- | --- |"]
    for model in a.models.split(","):
        full = {r["seed"]: r["accuracy"] for r in rows if r["model"] == model and r["run"] == "full"}
        for label in ["full"] + [l for l, _ in runs]:
            sel = [r for r in rows if r["model"] == model and r["run"] == label]
            if not sel:
                continue
            acc = statistics.mean(r["accuracy"] for r in sel)
            diff = statistics.mean(r["accuracy"] - full[r["seed"]] for r in sel)
            sp = [r["speedup"] for r in sel]
            spread = " ± %.2f" % statistics.stdev(sp) if len(sp) > 1 else ""
            lines.append("| %s | %s | %.2f | %+.2f | %.2fx%s |" % (model, label, acc, diff, statistics.mean(sp), spread))
    text = "\n".join(lines) + "\n"
    open(os.path.join(out, "table.md"), "w").write(text)
    print()
    print(text)
    print("runs and table: " + out)


if __name__ == "__main__":
    main()
