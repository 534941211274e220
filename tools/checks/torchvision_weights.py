#!/usr/bin/python3
"""Writes torchvision models' state dicts with a random input and torchvision's
output, so LearnDrop's `weights:` key can be checked against torchvision.

Run with Debian's /usr/bin/python3 (python3-torchvision):

    # the small fixture committed for the tests (resnet18 at 1/16 width, cifar stem)
    /usr/bin/python3 tools/checks/torchvision_weights.py --fixture tests/fixtures/resnet18_narrow
    # full-size models, then the same test against them
    /usr/bin/python3 tools/checks/torchvision_weights.py --full /tmp/tv
    LEARNDROP_WEIGHTS_CHECK=/tmp/tv build/bin/ldrop_tests --gtest_filter='ModelWeights.*'

Each case is a folder with weights.pt (torch.save(dict(model.state_dict()))),
weights-ordereddict.pt (torch.save(model.state_dict()), the usual way, which
LibTorch 1.13's unpickler cannot read by itself; see learndrop/weights.h) and
io.pt (input, output, and the model's settings).
"""
import argparse
import os

import torch
from torch import nn
import torchvision


def narrow(model, width, num_classes):
    """torchvision's architecture with every layer `width` times as wide."""
    def scale(c):
        return max(1, round(c * width))

    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Conv2d):
                cin = child.in_channels if child.in_channels == 3 else scale(child.in_channels)
                setattr(module, name, nn.Conv2d(cin, scale(child.out_channels), child.kernel_size, child.stride,
                                                child.padding, bias=child.bias is not None))
            elif isinstance(child, nn.BatchNorm2d):
                setattr(module, name, nn.BatchNorm2d(scale(child.num_features)))
            elif isinstance(child, nn.Linear):
                setattr(module, name, nn.Linear(scale(child.in_features), num_classes))
    return model


def cifar_stem(model):
    model.conv1 = nn.Conv2d(3, model.conv1.out_channels, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    return model


def randomize_statistics(model, generator):
    """Non-trivial batch-norm statistics, so eval mode is really checked."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.05)
            m.running_var.copy_(torch.rand(m.num_features, generator=generator) * 0.2 + 0.9)
            m.weight.data.copy_(torch.rand(m.num_features, generator=generator) * 0.2 + 0.9)
            m.bias.data.copy_(torch.randn(m.num_features, generator=generator) * 0.05)


def write_case(folder, model, settings, input_size, seed=0):
    os.makedirs(folder, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        randomize_statistics(model, g)
        model.eval()
        x = torch.randn(2, 3, input_size, input_size, generator=g)
        # Channels-last, as LearnDrop runs: the check then compares the
        # architectures, not two convolution algorithms' rounding.
        y = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
        model.to(memory_format=torch.contiguous_format)
    torch.save(dict(model.state_dict()), os.path.join(folder, "weights.pt"))
    torch.save(model.state_dict(), os.path.join(folder, "weights-ordereddict.pt"))
    io = dict(settings, input=x, output=y, input_size=input_size)
    torch.save(io, os.path.join(folder, "io.pt"))
    params = sum(p.numel() for p in model.parameters())
    print(f"{folder}: {settings['variant']} ({params} parameters), output {tuple(y.shape)}, max |logit| {y.abs().max():.3f}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixture", help="write the small test fixture here")
    parser.add_argument("--full", help="write full-size resnet50 and vgg11_bn cases under this folder")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.fixture:
        model = cifar_stem(narrow(torchvision.models.resnet18(), 1 / 16, 10))
        write_case(args.fixture, model,
                   {"variant": "resnet18", "stem": "cifar", "width": 1 / 16, "num_classes": 10}, 16)
    if args.full:
        write_case(os.path.join(args.full, "resnet50"), torchvision.models.resnet50(),
                   {"variant": "resnet50", "stem": "imagenet", "width": 1.0, "num_classes": 1000}, 224)
        write_case(os.path.join(args.full, "vgg11_bn"), torchvision.models.vgg11_bn(),
                   {"variant": "vgg11_bn", "stem": "imagenet", "width": 1.0, "num_classes": 1000}, 224)


if __name__ == "__main__":
    main()
