#!/usr/bin/env python3
"""A plain-PyTorch reference of LearnDrop's training loop, drop mechanics and
drop criteria, for exploring criteria on a GPU far faster than the C++ suite
runs on 2 CPU cores.

It mirrors the realistic CPU suite (configs/paper/realistic.yaml): ResNet-18
(CIFAR stem) and VGG-11-BN (compact classifier) at width 0.25, the first N
training images of CIFAR-10's binary batches, the 10,000-image test batch,
crop+flip, cosine learning rate with a 1-epoch linear warm-up (per step, as
core/src/optimizer.cpp), SGD with Nesterov momentum. After a drop it trains
from cached feature maps of the frozen prefix, with one of three ways of
keeping augmentation:

  frozen   one cached draw of crop+flip per sample (LearnDrop's views: 1)
  flip     the un-cropped image and its mirror cached; one drawn per epoch
  feature  as flip, plus a random translation of the cached map by a
           multiple of the prefix's stride, padded with the prefix's response
           to the image padding (LearnDrop's cache.augment: feature)

It is not LearnDrop: numbers from it steer experiments; the evidence in
docs/results.md comes from `ldrop suite run`.

Usage: ld_reference.py --data DIR --out FILE.jsonl --grid NAME [--workers N]
       [--deadline SECONDS] [--device cuda|cpu] [--scale tiny]
"""

import argparse
import json
import math
import multiprocessing as mp
import os
import queue
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


# ----------------------------------------------------------------------------- data

def load_cifar(root, n_train, n_test):
    def read(path, n):
        raw = np.fromfile(path, dtype=np.uint8).reshape(-1, 3073)[:n]
        labels = torch.from_numpy(raw[:, 0].astype(np.int64))
        images = torch.from_numpy(raw[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
        mean = torch.tensor(MEAN).view(1, 3, 1, 1)
        std = torch.tensor(STD).view(1, 3, 1, 1)
        return (images - mean) / std, labels

    folder = os.path.join(root, "cifar10", "cifar-10-batches-bin")
    xtr, ytr = read(os.path.join(folder, "data_batch_1.bin"), n_train)
    xte, yte = read(os.path.join(folder, "test_batch.bin"), n_test)
    return xtr, ytr, xte, yte


def pad_value(device):
    """Black in pixel space after normalisation: what the crop pads with."""
    return torch.tensor([-m / s for m, s in zip(MEAN, STD)], device=device)


def translate(x, shift_y, shift_x, pad, fill):
    """out[b, :, y, x] = x[b, :, y + dy, x + dx], `fill` (per channel) outside.
    shift_* in [-pad, pad]."""
    b, c, h, w = x.shape
    if pad == 0:
        return x
    big = fill.view(1, c, 1, 1).expand(b, c, h + 2 * pad, w + 2 * pad).clone()
    big[:, :, pad:pad + h, pad:pad + w] = x
    rows = (shift_y + pad).view(b, 1) + torch.arange(h, device=x.device).view(1, h)
    cols = (shift_x + pad).view(b, 1) + torch.arange(w, device=x.device).view(1, w)
    bi = torch.arange(b, device=x.device).view(b, 1, 1)
    out = big.permute(0, 2, 3, 1)[bi, rows.view(b, h, 1), cols.view(b, 1, w)]  # [b, h, w, c]
    return out.permute(0, 3, 1, 2).contiguous()


def crop_flip(x, gen, max_shift, fill):
    b = x.shape[0]
    dy = torch.randint(-max_shift, max_shift + 1, (b,), device=x.device, generator=gen)
    dx = torch.randint(-max_shift, max_shift + 1, (b,), device=x.device, generator=gen)
    flip = torch.rand(b, device=x.device, generator=gen) < 0.5
    x = torch.where(flip.view(b, 1, 1, 1), x.flip(3), x)
    return translate(x, dy, dx, max_shift, fill)


# ----------------------------------------------------------------------------- models

class Block(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.down = None
        if stride != 1 or cin != planes:
            self.down = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, 0, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        idt = self.down(x) if self.down is not None else x
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + idt)


def resnet18(width, classes=10):
    c = [max(1, round(v * width)) for v in (64, 128, 256, 512)]
    stages = [nn.Sequential(nn.Conv2d(3, c[0], 3, 1, 1, bias=False), nn.BatchNorm2d(c[0]), nn.ReLU())]
    names, strides = ["stem"], [1]
    cin, s = c[0], 1
    for layer in range(4):
        for b in range(2):
            stride = 2 if layer > 0 and b == 0 else 1
            s *= stride
            stages.append(Block(cin, c[layer], stride))
            names.append(f"layer{layer + 1}.{b}")
            strides.append(s)
            cin = c[layer]
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes))
    for m in nn.ModuleList(stages).modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return stages, head, names, strides


def vgg11_bn(width, classes=10):
    layout = [64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0]
    stages, names, strides = [], [], []
    cin, s = 3, 1
    for i, v in enumerate(layout):
        if v == 0:
            continue
        out = max(1, round(v * width))
        mods = [nn.Conv2d(cin, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
        if i + 1 < len(layout) and layout[i + 1] == 0:
            mods.append(nn.MaxPool2d(2))
            s *= 2
        stages.append(nn.Sequential(*mods))
        names.append(f"conv{len(stages)}")
        strides.append(s)
        cin = out
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, cin), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(cin, classes))
    for m in list(nn.ModuleList(stages).modules()) + list(head.modules()):
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    return stages, head, names, strides


MODELS = {"resnet18": resnet18, "vgg11_bn": vgg11_bn}


# ----------------------------------------------------------------------------- policies

class Fixed:
    """Drops to `cut` at epoch `at` for each (at, cut) in `schedule`."""

    def __init__(self, schedule, **_):
        self.schedule = sorted(schedule)

    def decide(self, p):
        cut = p["cut"]
        for at, c in self.schedule:
            if p["epoch"] + 1e-9 >= at:
                cut = max(cut, c)
        return cut


class ChangeScore:
    """The learn-drop criterion with the options under study."""

    def __init__(self, n, threshold=0.5, min_slope=0.2, window=1, patience=1, max_fraction=0.5, warmup=1.0,
                 normalize="none", reference="peak", reference_after=0.0, keep_last=0, cooldown=0.0,
                 min_progress=0.0, epochs=20, **_):
        self.o = dict(threshold=threshold, min_slope=min_slope, window=window, patience=patience,
                      max_fraction=max_fraction, warmup=warmup, normalize=normalize, reference=reference,
                      reference_after=reference_after, keep_last=keep_last, cooldown=cooldown,
                      min_progress=min_progress, epochs=epochs)
        self.ref = [0.0] * n
        self.scores = [[] for _ in range(n)]
        self.stopped = [0] * n
        self.last_drop = -1e9
        self.n = n

    def decide(self, p):
        o = self.o
        for i, st in enumerate(p["stages"]):
            if st["dropped"]:
                continue
            c = st["change"]
            if o["normalize"] == "lr":
                c = c / max(p["lr_sum"], 1e-12)
            if p["epoch"] + 1e-9 >= o["reference_after"]:
                if self.ref[i] <= 0 or (o["reference"] == "peak" and c > self.ref[i]):
                    self.ref[i] = c
            s = c / self.ref[i] if self.ref[i] > 0 else 1.0
            self.scores[i].append(s)
            hist = self.scores[i]
            w = o["window"]
            falling = True if len(hist) <= w else (hist[-1 - w] - hist[-1]) / w > o["min_slope"]
            stopped = s < o["threshold"] and not falling
            self.stopped[i] = self.stopped[i] + 1 if stopped else 0
        limit = max(p["cut"], min(int(math.floor(o["max_fraction"] * self.n + 1e-9)), self.n - o["keep_last"]))
        if p["epoch"] + 1e-9 < o["warmup"] or p["epoch"] / o["epochs"] + 1e-9 < o["min_progress"]:
            return p["cut"]
        if p["epoch"] - self.last_drop < o["cooldown"] - 1e-9:
            return p["cut"]
        cut = p["cut"]
        while cut < limit and self.stopped[cut] >= o["patience"]:
            cut += 1
        if cut > p["cut"]:
            self.last_drop = p["epoch"]
        return cut


class FreezeOut:
    """Brock et al. 2017: stage i freezes at fraction t_i of training, t_i
    linear from t0 (first stage) to 1 (last); with keep_last stages never."""

    def __init__(self, n, t0=0.5, keep_last=1, epochs=20, **_):
        self.n, self.t0, self.keep, self.epochs = n, t0, keep_last, epochs

    def decide(self, p):
        frac = p["epoch"] / self.epochs
        cut = p["cut"]
        for i in range(self.n - self.keep):
            t = self.t0 + (1 - self.t0) * i / max(1, self.n - 1)
            if frac + 1e-9 >= t:
                cut = max(cut, i + 1)
        return cut


class AutoFreeze:
    """Liu et al. 2021: at each point, the relative change of each stage's
    gradient norm since the previous point; the prefix whose changes are all
    below the `percentile` of the trained stages' changes is frozen."""

    def __init__(self, n, percentile=50, warmup=1.0, keep_last=1, **_):
        self.n, self.pct, self.warmup, self.keep = n, percentile, warmup, keep_last
        self.prev = [None] * n

    def decide(self, p):
        rates = {}
        for i, st in enumerate(p["stages"]):
            if st["dropped"]:
                continue
            g = st["grad_acc"]
            if self.prev[i] is not None and self.prev[i] > 0:
                rates[i] = abs(g - self.prev[i]) / self.prev[i]
            self.prev[i] = g
        if p["epoch"] + 1e-9 < self.warmup or len(rates) < 2:
            return p["cut"]
        thr = float(np.percentile(list(rates.values()), self.pct))
        cut = p["cut"]
        while cut < self.n - self.keep and cut in rates and rates[cut] < thr:
            cut += 1
        return cut


class NoDrop:
    def __init__(self, **_):
        pass

    def decide(self, p):
        return p["cut"]


POLICIES = {"none": NoDrop, "fixed": Fixed, "change": ChangeScore, "freezeout": FreezeOut, "autofreeze": AutoFreeze}


# ----------------------------------------------------------------------------- training

def lr_at(base, epoch, epochs, warmup):
    f = 0.5 * (1 + math.cos(math.pi * min(1.0, epoch / epochs)))
    if warmup > 0 and epoch < warmup:
        f *= (epoch + 1e-3) / warmup
    return base * f


def run(job, data, device):
    torch.manual_seed(job["seed"])
    gen = torch.Generator(device=device)
    gen.manual_seed(job["seed"] * 7919 + 17)
    xtr, ytr, xte, yte = data
    n = xtr.shape[0]
    stages, head, names, strides = MODELS[job["model"]](job.get("width", 0.25))
    stages = nn.ModuleList(stages).to(device)
    head = head.to(device)
    ns = len(stages)
    epochs, batch = job["epochs"], job.get("batch", 128)
    steps_per_epoch = n // batch + (1 if n % batch >= 2 else 0)
    groups = [{"params": list(s.parameters())} for s in stages] + [{"params": list(head.parameters())}]
    opt = torch.optim.SGD(groups, lr=job.get("lr", 0.1), momentum=0.9, nesterov=True,
                          weight_decay=job.get("wd", 5e-4))
    pol_kind = job.get("policy", "none")
    pol = POLICIES[pol_kind](n=ns, epochs=epochs, **job.get("policy_opts", {}))
    aug = job.get("aug", "feature")
    period = job.get("period", 10)
    fill0 = pad_value(device)
    snap = [[p.detach().clone() for p in s.parameters()] for s in stages]
    grad_acc = [0.0] * ns
    cut = 0
    cache = None  # [views * n, C, H, W]
    fill = None
    views = 1
    cost = 0.0  # forward FLOP-free cost proxy: stage-steps
    log = {"epochs": [], "drops": [], "stats": [] if job.get("record") else None}
    lr_sum, step, pts = 0.0, 0, 0
    ema = None
    if job.get("ema"):
        ema_decay = 1.0 - 1.0 / (job["ema"] * steps_per_epoch)
        ema = [[p.detach().clone() for p in s.parameters()] for s in stages]
    t0 = time.time()

    def prefix(x, a, b):
        for i in range(a, b):
            x = stages[i](x)
        return x

    def build(new_cut):
        nonlocal cache, fill, views
        if ema is not None:
            with torch.no_grad():
                for i in range(cut, new_cut):
                    for p, e in zip(stages[i].parameters(), ema[i]):
                        p.copy_(e)
                bns = [m for i in range(cut, new_cut) for m in stages[i].modules() if isinstance(m, nn.BatchNorm2d)]
                for m in bns:
                    m.reset_running_stats()
                    m.momentum = None
                for i in range(0, new_cut):
                    stages[i].train(i >= cut)
                src = torch.cat([xtr, xtr.flip(3)]) if cut == 0 else cache
                for i in range(0, src.shape[0], batch):
                    prefix(src[i:i + batch], cut, new_cut)
                for m in bns:
                    m.momentum = 0.1
        for i in range(cut, new_cut):
            stages[i].eval()
            for p in stages[i].parameters():
                p.requires_grad_(False)
                p.grad = None
        if aug == "live":  # control: frozen prefix run on every augmented batch, no cache
            return
        with torch.no_grad():
            if cut == 0:
                if aug == "frozen":
                    g = torch.Generator(device=device)
                    g.manual_seed(job["seed"] + 99)
                    src = torch.cat([crop_flip(xtr[i:i + 1000], g, 4, fill0) for i in range(0, n, 1000)])
                    views = 1
                else:
                    src = torch.cat([xtr, xtr.flip(3)])
                    views = 2
                out = torch.cat([prefix(src[i:i + 1000], 0, new_cut) for i in range(0, src.shape[0], 1000)])
            else:
                out = torch.cat([prefix(cache[i:i + 1000], cut, new_cut) for i in range(0, cache.shape[0], 1000)])
            # The prefix's response to an image of padding: the map's fill.
            big = fill0.view(1, 3, 1, 1).expand(1, 3, 96, 96).contiguous()
            f = prefix(big, 0, new_cut)
            fill = f[0, :, f.shape[2] // 2, f.shape[3] // 2].clone()
        cache = out

    def batches(order):
        for s in range(steps_per_epoch):
            yield order[s * batch:(s + 1) * batch]

    for epoch in range(epochs):
        order = torch.randperm(n, device=device, generator=gen)
        for s_, idx in enumerate(batches(order)):
            ep = epoch + s_ / steps_per_epoch
            lr = lr_at(job.get("lr", 0.1), ep, epochs, job.get("warmup_epochs", 1.0))
            for g_ in opt.param_groups:
                g_["lr"] = lr
            for i in range(ns):
                stages[i].train(i >= cut)
            head.train()
            y = ytr[idx]
            if cut == 0:
                x = crop_flip(xtr[idx], gen, 4, fill0)
            elif aug == "live":
                with torch.no_grad():
                    x = prefix(crop_flip(xtr[idx], gen, 4, fill0), 0, cut)
            else:
                b = idx.shape[0]
                v = torch.randint(0, views, (b,), device=device, generator=gen)
                x = cache[v * n + idx]
                if aug == "feature":
                    p_f = 4 // strides[cut - 1]
                    if p_f > 0:
                        dy = torch.randint(-p_f, p_f + 1, (b,), device=device, generator=gen)
                        dx = torch.randint(-p_f, p_f + 1, (b,), device=device, generator=gen)
                        x = translate(x, dy, dx, p_f, fill)
            out = head(prefix(x, cut, ns))
            loss = F.cross_entropy(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                with torch.no_grad():
                    for i in range(cut, ns):
                        for p, e in zip(stages[i].parameters(), ema[i]):
                            e.mul_(ema_decay).add_(p.detach(), alpha=1 - ema_decay)
            cost += (ns - cut) / ns
            step += 1
            lr_sum += lr
            if job.get("grad_stats"):
                with torch.no_grad():
                    for i in range(cut, ns):
                        gs = [p.grad.pow(2).sum() for p in stages[i].parameters() if p.grad is not None]
                        grad_acc[i] = grad_acc[i] + torch.stack(gs).sum().sqrt()
            if step % period == 0 or (period == 0 and s_ == steps_per_epoch - 1):
                pts += 1
                st = []
                with torch.no_grad():
                    for i in range(ns):
                        if i < cut:
                            st.append({"dropped": True, "change": 0.0, "grad_acc": 0.0})
                            continue
                        num = sum(float((p - q).pow(2).sum()) for p, q in zip(stages[i].parameters(), snap[i]))
                        den = sum(float(q.pow(2).sum()) for q in snap[i])
                        st.append({"dropped": False, "change": math.sqrt(num / den), "grad_acc": float(grad_acc[i])})
                        snap[i] = [p.detach().clone() for p in stages[i].parameters()]
                        grad_acc[i] = 0.0
                pin = {"epoch": epoch + (s_ + 1) / steps_per_epoch, "cut": cut, "lr_sum": lr_sum, "stages": st}
                if log["stats"] is not None:
                    log["stats"].append({"epoch": pin["epoch"], "lr_sum": lr_sum,
                                         "change": [x["change"] for x in st], "grad": [x["grad_acc"] for x in st]})
                lr_sum = 0.0
                target = min(pol.decide(pin), ns)
                if target > cut:
                    build(target)
                    cost += (target - cut) / ns * views * n / batch / 3.0  # forward-only build
                    log["drops"].append({"epoch": pin["epoch"], "cut": target})
                    cut = target
        # evaluation of the full model
        for s in stages:
            s.eval()
        head.eval()
        with torch.no_grad():
            correct = 0
            for i in range(0, xte.shape[0], 1000):
                correct += int((head(prefix(xte[i:i + 1000], 0, ns)).argmax(1) == yte[i:i + 1000]).sum())
        log["epochs"].append({"epoch": epoch + 1, "test": correct / xte.shape[0], "cut": cut, "cost": cost})
    log["test"] = log["epochs"][-1]["test"]
    log["seconds"] = time.time() - t0
    return log


# ----------------------------------------------------------------------------- grids

def grid(name, seeds=(1, 2, 3)):
    jobs = []

    def add(**kw):
        for s in seeds:
            j = dict(kw)
            j["seed"] = s
            jobs.append(j)

    if name == "main":
        rn, vg = "resnet18", "vgg11_bn"
        # P0: full training with stats, and budget baselines.
        for m in (rn, vg):
            add(model=m, epochs=20, policy="none", record=True, grad_stats=True, tag="full")
        for m in (rn, vg):
            for e in (8, 10, 11, 12, 13, 14, 16):
                add(model=m, epochs=e, policy="none", tag=f"budget{e}")
        # P1: fixed schedules, feature augmentation, ResNet-18.
        for c in (3, 4, 5, 7):
            for at in (2, 4, 6, 8, 10):
                add(model=rn, epochs=20, policy="fixed", policy_opts={"schedule": [[at, c]]}, tag=f"fix{c}@{at}")
        for sched in ([[2, 1], [4, 3], [7, 5], [10, 7]], [[3, 3], [6, 5], [9, 7]], [[4, 3], [8, 5], [12, 7]],
                      [[2, 3], [5, 5], [8, 7]], [[3, 3], [6, 5]], [[4, 3], [8, 5]]):
            add(model=rn, epochs=20, policy="fixed", policy_opts={"schedule": sched},
                tag="prog" + "_".join(f"{c}@{a}" for a, c in sched))
        # P2: augmentation modes.
        for a in ("frozen", "flip"):
            for c, at in ((3, 4), (5, 6), (7, 8)):
                add(model=rn, epochs=20, policy="fixed", aug=a, policy_opts={"schedule": [[at, c]]},
                    tag=f"fix{c}@{at}-{a}")
        for a in ("frozen", "flip"):
            add(model=vg, epochs=20, policy="fixed", aug=a, policy_opts={"schedule": [[4, 2]]}, tag=f"fix2@4-{a}")
        # P3: VGG fixed schedules.
        for c in (1, 2, 4, 6):
            for at in (2, 4, 6, 8):
                add(model=vg, epochs=20, policy="fixed", policy_opts={"schedule": [[at, c]]}, tag=f"fix{c}@{at}")
        # P4: criteria online.
        for m in (rn, vg):
            add(model=m, epochs=20, policy="change", aug="frozen", tag="ld-defaults-frozen")
            add(model=m, epochs=20, policy="change", tag="ld-defaults")
            add(model=m, epochs=20, policy="change", policy_opts={"max_fraction": 1.0, "keep_last": 1},
                tag="ld-keep1")
            add(model=m, epochs=20, policy="change",
                policy_opts={"normalize": "lr", "reference_after": 1.0, "max_fraction": 1.0, "keep_last": 1},
                tag="ld-lr-keep1")
            add(model=m, epochs=20, policy="freezeout", policy_opts={"t0": 0.5}, tag="freezeout0.5")
            add(model=m, epochs=20, policy="autofreeze", grad_stats=True, tag="autofreeze50")
    if name == "second":
        rn, vg = "resnet18", "vgg11_bn"
        # A: controls for the cost of caching vs freezing itself.
        for a in ("live", "flip", "frozen"):
            for c, at in ((3, 8), (5, 8)):
                add(model=rn, epochs=20, policy="fixed", aug=a, policy_opts={"schedule": [[at, c]]},
                    tag=f"fix{c}@{at}-{a}")
        # B: late drops.
        for c, at in ((3, 12), (3, 14), (5, 12), (5, 14), (7, 10), (7, 12), (7, 14)):
            add(model=rn, epochs=20, policy="fixed", policy_opts={"schedule": [[at, c]]}, tag=f"fix{c}@{at}")
        # C: progressive.
        for sched in ([[8, 3], [11, 5], [14, 7]], [[6, 3], [10, 5], [14, 7]], [[4, 3], [8, 5], [12, 7]],
                      [[10, 3], [14, 7]]):
            add(model=rn, epochs=20, policy="fixed", policy_opts={"schedule": sched},
                tag="prog" + "_".join(f"{c}@{a}" for a, c in sched))
        # E: VGG at lr 0.05.
        add(model=vg, epochs=20, lr=0.05, policy="none", tag="lr05-full", record=True)
        for e in (10, 13):
            add(model=vg, epochs=e, lr=0.05, policy="none", tag=f"lr05-budget{e}")
        for c, at in ((2, 4), (2, 8), (4, 8)):
            add(model=vg, epochs=20, lr=0.05, policy="fixed", policy_opts={"schedule": [[at, c]]},
                tag=f"lr05-fix{c}@{at}")
        # D: criteria online.
        add(model=rn, epochs=20, policy="change", tag="ld-defaults")
        add(model=rn, epochs=20, policy="change", policy_opts={"max_fraction": 1.0, "keep_last": 1}, tag="ld-keep1")
        add(model=rn, epochs=20, policy="change",
            policy_opts={"normalize": "lr", "reference_after": 1.0, "max_fraction": 1.0, "keep_last": 1},
            tag="ld-lr-keep1")
        add(model=rn, epochs=20, policy="freezeout", policy_opts={"t0": 0.5}, tag="freezeout0.5")
        add(model=rn, epochs=20, policy="autofreeze", grad_stats=True, tag="autofreeze50")
    if name == "ema":
        rn = "resnet18"
        for e in (0, 1.0):
            add(model=rn, epochs=20, policy="fixed", ema=e, policy_opts={"schedule": [[8, 3]]}, tag=f"fix3@8-ema{e}")
            add(model=rn, epochs=20, policy="fixed", ema=e, policy_opts={"schedule": [[8, 3], [11, 5], [14, 7]]},
                tag=f"prog3@8_5@11_7@14-ema{e}")
    if name == "smoke":  # every code path, a few epochs
        for m in ("resnet18", "vgg11_bn"):
            for a in ("feature", "flip", "frozen"):
                jobs.append(dict(model=m, epochs=3, seed=1, policy="fixed", aug=a,
                                 policy_opts={"schedule": [[1, 2], [2, 5]]}, tag=f"smoke-{a}"))
            jobs.append(dict(model=m, epochs=3, seed=1, policy="change", record=True, grad_stats=True,
                             policy_opts={"warmup": 0, "threshold": 2, "min_slope": 10}, tag="smoke-change"))
            jobs.append(dict(model=m, epochs=3, seed=1, policy="freezeout", tag="smoke-freezeout"))
            jobs.append(dict(model=m, epochs=3, seed=1, policy="autofreeze", grad_stats=True, tag="smoke-autofreeze"))
    return jobs


# ----------------------------------------------------------------------------- driver

def worker(wid, jobs, results, args):
    device = torch.device(args.device)
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = True
    d = load_cifar(args.data, args.n_train, args.n_test)
    data = tuple(t.to(device) for t in d)
    while True:
        try:
            k, job = jobs.get_nowait()
        except queue.Empty:
            return
        if time.time() > args.deadline_at:
            results.put((k, job, {"skipped": "deadline"}))
            continue
        try:
            r = run(job, data, device)
        except Exception as e:  # keep the other jobs going
            r = {"error": repr(e)}
        results.put((k, job, r))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--grid", default="main")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--deadline", type=float, default=1e9)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads per worker on the CPU")
    ap.add_argument("--n-train", type=int, default=5000)
    ap.add_argument("--n-test", type=int, default=10000)
    args = ap.parse_args()
    args.deadline_at = time.time() + args.deadline
    js = grid(args.grid)
    ctx = mp.get_context("spawn")
    jobs, results = ctx.Queue(), ctx.Queue()
    for k, j in enumerate(js):
        jobs.put((k, j))
    procs = [ctx.Process(target=worker, args=(w, jobs, results, args)) for w in range(args.workers)]
    for p in procs:
        p.start()
    done = 0
    start = time.time()
    with open(args.out, "w") as f:
        while done < len(js):
            try:
                k, job, r = results.get(timeout=5)
            except queue.Empty:
                if not any(p.is_alive() for p in procs):
                    break
                continue
            done += 1
            f.write(json.dumps({"k": k, "job": job, "result": r}) + "\n")
            f.flush()
            print(f"[{time.time() - start:6.1f}s] {done}/{len(js)} {job['model']} {job['tag']} s{job['seed']}: "
                  f"{r.get('test', r.get('error', r.get('skipped')))} {r.get('seconds', 0):.1f}s", flush=True)
    for p in procs:
        p.join(timeout=10)


if __name__ == "__main__":
    main()
