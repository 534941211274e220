#!/usr/bin/python3
"""How far a cached, shifted view is from the frozen prefix run on the real shifted input.

CIFAR-10's crop_flip draws a shift of up to 4 pixels with black padding.
After a cached drop at a stride-1 cut the host reads the prefix's output of
the unshifted image, shifted by the same amount and filled with the prefix's
response to a black image (cache.augment: feature, docs/config.md). This
compares, over every shift and a batch of test images, the relative RMS
difference to the truth (the prefix run on the shifted, padded crop) of
  - that feature shift, and
  - a window of the prefix's output on the whole padded image (40 x 40),
    a cache that stores the padded map instead (not built).
For a LearnDrop ResNet with the CIFAR stem (stages 0..cut-1: the stem and
layer1's blocks, stride 1):

  /usr/bin/python3 tools/bench/shift_error.py RUN/model.pt $LEARNDROP_DATA/cifar10/cifar-10-batches-bin/test_batch.bin [--cut 3]
"""
import argparse

import numpy as np
import torch
import torch.nn.functional as F

MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)  # as plugins/datasets/cifar10.cpp
STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
PAD = 4


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="model.pt of a finished ResNet run with model.stem: cifar")
    ap.add_argument("batch", help="a CIFAR-10 binary batch (test_batch.bin)")
    ap.add_argument("--cut", type=int, default=3, help="stages in the prefix: 1 (stem) to 3 (stem, layer1.0, layer1.1)")
    ap.add_argument("--images", type=int, default=128)
    a = ap.parse_args()
    if not 1 <= a.cut <= 3:
        raise SystemExit("shift_error.py: --cut %d: expected 1 to 3 (the stride-1 stages of the CIFAR stem)" % a.cut)
    torch.set_num_threads(1)
    module = torch.jit.load(a.model)
    p, b = dict(module.named_parameters()), dict(module.named_buffers())

    def bn(x, n):
        return F.batch_norm(x, b[n + ".running_mean"], b[n + ".running_var"], p[n + ".weight"], p[n + ".bias"],
                            False, 0.0, 1e-5)

    def prefix(x):
        x = F.relu(bn(F.conv2d(x, p["stage0.conv1.weight"], padding=1), "stage0.bn1"))
        for s in range(1, a.cut):
            h = F.relu(bn(F.conv2d(x, p["stage%d.conv1.weight" % s], padding=1), "stage%d.bn1" % s))
            x = F.relu(bn(F.conv2d(h, p["stage%d.conv2.weight" % s], padding=1), "stage%d.bn2" % s) + x)
        return x

    raw = np.fromfile(a.batch, dtype=np.uint8).reshape(-1, 3073)[: a.images]
    x = (torch.tensor(raw[:, 1:]).float().view(-1, 3, 32, 32) / 255 - MEAN) / STD
    black = -MEAN / STD  # padding is black in pixel space
    padded = black.expand(x.size(0), 3, 32 + 2 * PAD, 32 + 2 * PAD).clone()
    padded[:, :, PAD:PAD + 32, PAD:PAD + 32] = x
    err = {"feature shift (built)": 0.0, "window of the padded map (not built)": 0.0}
    norm = 0.0
    with torch.no_grad():
        plain, big = prefix(x), prefix(padded)
        fill = prefix(black.expand(1, 3, 32, 32))[:, :, 16, 16].view(1, -1, 1, 1)
        for dy in range(-PAD, PAD + 1):
            for dx in range(-PAD, PAD + 1):
                truth = prefix(padded[:, :, PAD + dy:PAD + dy + 32, PAD + dx:PAD + dx + 32])
                shifted = fill.expand_as(plain).clone()
                y0, y1, x0, x1 = max(0, -dy), min(32, 32 - dy), max(0, -dx), min(32, 32 - dx)
                shifted[:, :, y0:y1, x0:x1] = plain[:, :, y0 + dy:y1 + dy, x0 + dx:x1 + dx]
                window = big[:, :, PAD + dy:PAD + dy + 32, PAD + dx:PAD + dx + 32]
                err["feature shift (built)"] += ((shifted - truth) ** 2).sum().item()
                err["window of the padded map (not built)"] += ((window - truth) ** 2).sum().item()
                norm += (truth ** 2).sum().item()
    print("cut %d, %d images, %d shifts" % (a.cut, x.size(0), (2 * PAD + 1) ** 2))
    print("| cached view | relative RMS difference to the real shifted input |")
    print("| --- | --- |")
    for k, v in err.items():
        print("| %s | %.3f |" % (k, (v / norm) ** 0.5))


if __name__ == "__main__":
    main()
