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

  /usr/bin/python3 tools/bench/shift_error.py RUN/model.pt $LEARNDROP_DATA [--cut 3]

The data, the black padding, the shift with a fill and the ResNet-18 stages
(loaded with the run's weights) are those of
tools/reference/ld_reference.py, the plain-PyTorch reference.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "reference"))
from ld_reference import load_cifar, pad_value, resnet18, translate  # noqa: E402

PAD = 4


def reference_stages(module, path):
    """The stages of the reference's ResNet-18 (tools/reference/ld_reference.py) holding the weights of
    LearnDrop's model.pt (stage0.conv1, stage0.bn1, stageS.{conv1,bn1,conv2,bn2,downsample.0,downsample.1}), in
    eval mode."""
    state = {k: v for k, v in list(module.named_parameters()) + list(module.named_buffers())
             if k.startswith("stage")}
    if "stage0.conv1.weight" not in state:
        raise SystemExit("shift_error.py: %s: not a ResNet with model.stem: cifar (no stage0.conv1.weight)" % path)
    stages, _, _, _ = resnet18(state["stage0.conv1.weight"].shape[0] / 64)
    stem = {"stage0.conv1.": "0.0.", "stage0.bn1.": "0.1."}  # the reference's stem is Sequential(conv, bn, relu)

    def rename(k):
        for old, new in stem.items():
            if k.startswith(old):
                return new + k[len(old):]
        return k[len("stage"):].replace("downsample.", "down.")

    renamed = {rename(k): v for k, v in state.items()}
    model = torch.nn.ModuleList(stages)
    try:
        model.load_state_dict(renamed)
    except RuntimeError as e:
        raise SystemExit("shift_error.py: %s: does not match the reference ResNet-18: %s" % (path, e))
    return list(model.eval())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="model.pt of a finished ResNet run with model.stem: cifar")
    ap.add_argument("data", help="the data root ($LEARNDROP_DATA): its cifar10/cifar-10-batches-bin/test_batch.bin")
    ap.add_argument("--cut", type=int, default=3, help="stages in the prefix: 1 (stem) to 3 (stem, layer1.0, layer1.1)")
    ap.add_argument("--images", type=int, default=128)
    a = ap.parse_args()
    if not 1 <= a.cut <= 3:
        raise SystemExit("shift_error.py: --cut %d: expected 1 to 3 (the stride-1 stages of the CIFAR stem)" % a.cut)
    for path in (a.model, os.path.join(a.data, "cifar10", "cifar-10-batches-bin", "test_batch.bin")):
        if not os.path.isfile(path):
            raise SystemExit("shift_error.py: %s: no such file" % path)
    torch.set_num_threads(1)
    stages = reference_stages(torch.jit.load(a.model), a.model)[:a.cut]

    def prefix(x):
        for stage in stages:
            x = stage(x)
        return x

    x = load_cifar(a.data, 0, a.images)[2]
    black = pad_value(x.device)  # black in pixel space, what the crop pads with
    padded = black.view(1, 3, 1, 1).expand(x.size(0), 3, 32 + 2 * PAD, 32 + 2 * PAD).clone()
    padded[:, :, PAD:PAD + 32, PAD:PAD + 32] = x
    err = {"feature shift (built)": 0.0, "window of the padded map (not built)": 0.0}
    norm = 0.0
    with torch.no_grad():
        plain, big = prefix(x), prefix(padded)
        fill = prefix(black.view(1, 3, 1, 1).expand(1, 3, 32, 32))[0, :, 16, 16]
        n = x.size(0)
        for dy in range(-PAD, PAD + 1):
            for dx in range(-PAD, PAD + 1):
                sy, sx = torch.full((n,), dy), torch.full((n,), dx)
                truth = prefix(translate(x, sy, sx, PAD, black))  # crop_flip's crop, without the flip
                shifted = translate(plain, sy, sx, PAD, fill)
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
