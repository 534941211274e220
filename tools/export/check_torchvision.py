#!/usr/bin/python3
"""Loads a state dict written by `ldrop export --format torchvision` into
torchvision's model and checks that its logits match LearnDrop's.

usage: /usr/bin/python3 tools/export/check_torchvision.py EXPORTED PROBE [--atol A]

PROBE is the file `ldrop export --probe N` wrote next to EXPORTED: N inputs,
LearnDrop's logits on them and the model's options. Exit 0 when the state
dict loads with every key used (strict) and the logits match; 1 otherwise;
2 when the model is not one torchvision builds (the message says how to
build the matching module; docs/checkpoints.md).
Needs Debian's python3-torch and python3-torchvision.
"""
import argparse
import sys

import torch
from torch import nn
import torchvision


def build(probe):
    """torchvision's module for the exported model, adapted as docs/checkpoints.md says."""
    name = probe["model"]
    options = probe["options"]
    classes = int(probe["num_classes"])
    in_channels = int(probe["in_channels"])
    if float(options.get("width", "1")) != 1.0:
        raise NotImplementedError(f"width {options['width']}: torchvision builds width 1 only; "
                                  "scale every layer's channels by the width to match")
    if name.startswith("resnet"):
        m = getattr(torchvision.models, name)(num_classes=classes)
        if options.get("stem") == "cifar":
            # LearnDrop's CIFAR stem: 3x3/1 convolution, no max-pool.
            m.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
            m.maxpool = nn.Identity()
        elif in_channels != 3:
            m.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        return m
    if name.startswith("vgg"):
        if options.get("classifier") != "full":
            raise NotImplementedError(f"classifier {options.get('classifier')}: torchvision's VGG has the full "
                                      "classifier only (LearnDrop's classifier: full)")
        m = getattr(torchvision.models, name)(num_classes=classes)
        if in_channels != 3:
            first = m.features[0]
            m.features[0] = nn.Conv2d(in_channels, first.out_channels, 3, 1, 1)
        return m
    raise NotImplementedError(f"model {name} has no torchvision counterpart")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("exported")
    parser.add_argument("probe")
    parser.add_argument("--atol", type=float, default=1e-4, help="largest absolute logit difference allowed")
    args = parser.parse_args()
    state = torch.load(args.exported)
    probe = torch.load(args.probe)
    try:
        model = build(probe)
    except NotImplementedError as e:
        print(f"check_torchvision: {e}", file=sys.stderr)
        return 2
    model.load_state_dict(state, strict=True)  # every key of either side used
    model.eval()
    with torch.no_grad():
        logits = model(probe["inputs"])
    diff = (logits - probe["logits"]).abs().max().item()
    scale = probe["logits"].abs().max().item()
    agree = (logits.argmax(1) == probe["logits"].argmax(1)).float().mean().item()
    ok = diff <= args.atol * max(1.0, scale)
    print(f"torchvision.models.{probe['model']}: {len(state)} tensors loaded (strict); logits of "
          f"{probe['inputs'].shape[0]} inputs: max |difference| {diff:.3g} (largest logit {scale:.3g}), "
          f"argmax agrees on {100 * agree:.0f}%: {'match' if ok else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
