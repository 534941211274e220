"""Learn&Drop's change score (the built-in `learn-drop` policy) in Python.

A drop criterion for LearnDrop's `python` policy plugin
(docs/policies/python.md). It follows plugins/policies/learn_drop.cpp step
by step, so that on the same recorded run it takes exactly the C++ policy's
decisions (tests/integration/test_replay.cpp checks this). The drop guards
(min_progress, keep_stages, stagger, ...) are the plugin's keys, applied by
it to this class's answer as to any built-in policy's.

    policy:
      plugin: python
      file: learn_drop.py    # relative to the config file's folder
      class: LearnDrop
      options: '{"threshold": 0.5}'
"""


class LearnDrop:
    def __init__(self, context, options):
        self.threshold = float(options.get("threshold", 0.5))
        self.min_slope = float(options.get("min_slope", 0.2))
        self.window = int(options.get("window", 1))
        self.patience = int(options.get("patience", 1))
        self.warmup = float(options.get("warmup", 1))
        self.peak_reference = options.get("reference", "peak") == "peak"
        self.lr_normalized = options.get("normalize", "none") == "lr"
        self.smooth = int(options.get("smooth", 1))
        self.lr_warmup = float(context.lr_warmup_epochs)
        self.steps_per_epoch = float(max(1, context.steps_per_epoch))
        n = context.num_stages
        self.reference = [0.0] * n
        self.recent = [[] for _ in range(n)]
        self.scores = [[] for _ in range(n)]
        self.stopped_for = [0] * n

    def still_falling(self, s):
        w = self.window
        if len(s) <= w:
            return True
        return (s[len(s) - 1 - w] - s[-1]) / w > self.min_slope

    def decide(self, input):
        period_start = input.epoch - input.steps_since_point / self.steps_per_epoch
        in_lr_warmup = period_start < self.lr_warmup - 1e-9
        for i, s in enumerate(input.stages):
            if s.dropped:
                continue
            change = s.relative_change
            if self.lr_normalized:
                change = change / input.lr_sum if input.lr_sum > 0 else 0.0
            recent = self.recent[i]
            recent.append(change)
            if len(recent) > self.smooth:
                recent.pop(0)
            total = 0.0
            for c in recent:  # left to right, as std::accumulate
                total += c
            smoothed = total / len(recent)
            if not in_lr_warmup and (self.reference[i] <= 0 or (self.peak_reference and smoothed > self.reference[i])):
                self.reference[i] = smoothed
            score = smoothed / self.reference[i] if self.reference[i] > 0 else 1.0
            self.scores[i].append(score)
            del self.scores[i][:-(self.window + 1)]
            stopped = score < self.threshold and not self.still_falling(self.scores[i])
            self.stopped_for[i] = self.stopped_for[i] + 1 if stopped else 0
        if input.epoch + 1e-9 < self.warmup:
            return input.cut, "warmup: no drop before epoch %g" % self.warmup
        wanted = input.cut
        while wanted < len(input.stages) and self.stopped_for[wanted] >= self.patience:
            wanted += 1
        scores = " ".join("%s=%.3f" % (input.stages[i].name, self.scores[i][-1]) for i in range(input.cut, wanted))
        return wanted, "change scores %s below %.3f and no longer falling" % (scores, self.threshold)

    # Checkpoints and resume: named lists of numbers.
    def save_state(self):
        state = {"reference": list(self.reference), "stopped_for": [float(x) for x in self.stopped_for]}
        for i in range(len(self.scores)):
            state["recent.%d" % i] = list(self.recent[i])
            state["scores.%d" % i] = list(self.scores[i])
        return state

    def load_state(self, state):
        self.reference = list(state["reference"])
        self.stopped_for = [int(x) for x in state["stopped_for"]]
        for i in range(len(self.scores)):
            self.recent[i] = list(state["recent.%d" % i])
            self.scores[i] = list(state["scores.%d" % i])
