#!/usr/bin/env python3
"""Mean ± sample std over seeds of ld_reference.py results.

Usage: summarize.py RESULTS.jsonl[.gz] ... [--model resnet18]
Prints one line per (model, tag): seeds, final test accuracy, the drops of
the first seed's run.
"""
import collections
import gzip
import json
import statistics
import sys


def main():
    args = sys.argv[1:]
    only = None
    if "--model" in args:
        only = args[args.index("--model") + 1]
        del args[args.index("--model"):args.index("--model") + 2]
    files = args
    runs = collections.defaultdict(list)
    for name in files:
        opener = gzip.open if name.endswith(".gz") else open
        with opener(name, "rt") as f:
            for line in f:
                r = json.loads(line)
                job, res = r["job"], r["result"]
                if "test" in res and (only is None or job["model"] == only):
                    runs[(job["model"], job["tag"])].append(res)
    for (model, tag), rs in sorted(runs.items()):
        acc = [100 * r["test"] for r in rs]
        sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
        drops = " ".join("%d@%g" % (d["cut"], d["epoch"]) for d in rs[0]["drops"])
        print("%-9s %-30s %d seeds  %6.2f ± %4.2f %%  %s" % (model, tag, len(rs), statistics.mean(acc), sd, drops))


if __name__ == "__main__":
    main()
