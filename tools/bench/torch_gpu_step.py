#!/usr/bin/env python3
"""Training step times of a torchvision model in plain PyTorch on a GPU: the
baseline of tools/bench/gpu.sh. Same model, batch, input, precision and
optimizer as `ldrop model bench --device cuda`:

- full: every stage trained, input resident on the GPU;
- cut (device): stages [0, CUT) frozen and not run, the cut's feature map
  stored on the GPU in the compute type, converted to float32 each step;
- cut (host): the same map in pinned host memory, copied each step with
  non_blocking=True (what a RAM cache feeds).

Stages are LearnDrop's: a ResNet's stem and each residual block, a VGG's
conv-bn-relu(-pool) groups. Channels-last, autocast, SGD(momentum=0.9).

Usage: torch_gpu_step.py VARIANT STEM INPUT_SIZE BATCH CUT PRECISION [STEPS]
Prints one line: `VARIANT full_ms cut_device_ms cut_host_ms flops_left_unknown`.
Needs a PyTorch with CUDA (the GPU machines' python3, not Debian's).
"""
import sys
import time

import torch
from torch import nn
import torchvision

variant, stem = sys.argv[1], sys.argv[2]
size, batch, cut = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
precision = sys.argv[6]
steps = int(sys.argv[7]) if len(sys.argv) > 7 else 50
if not torch.cuda.is_available():
    sys.exit("torch_gpu_step.py: this PyTorch sees no CUDA device")
device = torch.device("cuda")
dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
torch.manual_seed(0)
torch.backends.cudnn.benchmark = True

model = getattr(torchvision.models, variant)(num_classes=10)
if variant.startswith("resnet"):
    if stem == "cifar":
        model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    stages = [nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)]
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        stages.extend(layer)
    head = nn.Sequential(model.avgpool, nn.Flatten(1), model.fc)
else:
    stages, group = [], []
    for m in model.features:
        if isinstance(m, nn.MaxPool2d):
            stages[-1].append(m)
            continue
        group.append(m)
        if isinstance(m, nn.ReLU):
            stages.append(nn.Sequential(*group))
            group = []
    head = nn.Sequential(model.avgpool, nn.Flatten(1), model.classifier)
stages = nn.ModuleList(stages).to(device, memory_format=torch.channels_last)
head = head.to(device)
y = torch.randint(0, 10, (batch,), device=device)


def feature_map(x):
    with torch.no_grad(), torch.autocast("cuda", dtype=dtype, enabled=precision != "fp32"):
        for s in stages[:cut]:
            x = s(x)
    return x.to(dtype if precision != "fp32" else torch.float32)


def time_steps(first, make_input):
    for i, s in enumerate(stages):
        s.train(i >= first)
        for p in s.parameters():
            p.requires_grad_(i >= first)
    params = [p for s in stages[first:] for p in s.parameters()] + list(head.parameters())
    sgd = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")

    def step():
        x = make_input()
        with torch.autocast("cuda", dtype=dtype, enabled=precision != "fp32"):
            for s in stages[first:]:
                x = s(x)
            loss = nn.functional.cross_entropy(head(x), y)
        sgd.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(sgd)
        scaler.update()

    for _ in range(10):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps * 1000


x0 = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
full = time_steps(0, lambda: x0)
cached = feature_map(x0).contiguous(memory_format=torch.channels_last)
on_device = time_steps(cut, lambda: cached.float())
pinned = cached.cpu().pin_memory()
on_host = time_steps(cut, lambda: pinned.to(device, non_blocking=True).float())
print(f"{variant} {full:.3f} {on_device:.3f} {on_host:.3f}")
