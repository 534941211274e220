#!/usr/bin/python3
"""Reproduces the LibTorch/PyTorch 1.13 heap corruption that the resnet plugin
works around: backward of a strided 1x1 convolution in channels-last format
with fewer than 8 input channels. Run with Debian's /usr/bin/python3.

    /usr/bin/python3 tools/checks/check_conv1x1_bug.py 4 8   # crashes on 1.13
    /usr/bin/python3 tools/checks/check_conv1x1_bug.py 8 16  # fine
"""
import sys

import torch

cin, cout = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(1)
conv = torch.nn.Conv2d(cin, cout, 1, stride=2, bias=False).to(memory_format=torch.channels_last)
x = torch.randn(32, cin, 16, 16).to(memory_format=torch.channels_last).requires_grad_()
for _ in range(20):
    conv(x).sum().backward()
print(f"ok: {cin}->{cout} 1x1/2 channels-last backward, torch {torch.__version__}")
