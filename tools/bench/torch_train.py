#!/usr/bin/python3
"""Training images/s of a torchvision model in plain PyTorch, the baseline of
tools/bench/models.sh. Same model, batch, input and optimizer as
`ldrop model bench`. Run with Debian's /usr/bin/python3 (python3-torchvision).

Usage: torch_train.py VARIANT STEM INPUT_SIZE BATCH STEPS THREADS
"""
import sys
import time

import torch
from torch import nn
import torchvision

variant, stem, size, batch, steps, threads = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7])
torch.set_num_threads(threads)
torch.manual_seed(0)
model = getattr(torchvision.models, variant)(num_classes=10)
if stem == "cifar" and variant.startswith("resnet"):
    model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
model = model.to(memory_format=torch.channels_last).train()
sgd = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
x = torch.randn(batch, 3, size, size).to(memory_format=torch.channels_last)
y = torch.randint(0, 10, (batch,))


def step():
    loss = nn.functional.cross_entropy(model(x), y)
    sgd.zero_grad()
    loss.backward()
    sgd.step()


for _ in range(3):
    step()
start = time.perf_counter()
for _ in range(steps):
    step()
seconds = time.perf_counter() - start
print(f"{variant}: {steps} training steps of batch {batch} at 3x{size}x{size}, {threads} threads: "
      f"{batch * steps / seconds:.1f} images/s ({seconds / steps:.3f} s/step)")
