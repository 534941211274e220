#!/bin/bash
# ldrop export --format torchvision, checked in PyTorch: the exported state
# dict loads (strict) into torchvision's ResNet-18, with either stem, and its
# logits match LearnDrop's. Skipped (77) without Debian's python3-torch and
# python3-torchvision.
# usage: export_torchvision.sh SOURCE_DIR LDROP FIXTURE
set -euo pipefail
src=$1 ldrop=$2 fixture=$3
py=/usr/bin/python3
if ! $py -c "import torch, torchvision" 2>/dev/null; then
  echo "SKIP: $py has no torch and torchvision (apt-get install python3-torch python3-torchvision)"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$fixture" "$work/data" --cifar 16 > /dev/null
cat > "$work/run.yaml" <<YAML
experiment:
  name: export
  seed: 1
runtime:
  threads: 2
model:
  plugin: resnet
  variant: resnet18
dataset:
  plugin: cifar10
  root: $work/data
train:
  epochs: 1
  batch_size: 16
policy:
  plugin: fixed
  cut: 2
  epoch: 0.5
YAML
for stem in cifar imagenet; do
  "$ldrop" run "$work/run.yaml" --out "$work/$stem" --quiet --set model.stem=$stem > "$work/$stem.log" 2>&1 ||
    { cat "$work/$stem.log"; exit 1; }
  "$ldrop" export "$work/$stem" --probe 8
  $py "$src/tools/export/check_torchvision.py" "$work/$stem/model.torchvision.pt" "$work/$stem/model.torchvision.probe.pt"
done

# A model torchvision does not build is refused with the reason (exit 2).
"$ldrop" run "$work/run.yaml" --out "$work/vgg" --quiet --set model.plugin=vgg --set model.variant=vgg11_bn \
  --set model.width=0.0625 --set model.classifier=compact > "$work/vgg.log" 2>&1 || { cat "$work/vgg.log"; exit 1; }
"$ldrop" export "$work/vgg" --probe 2 > /dev/null
set +e
message=$($py "$src/tools/export/check_torchvision.py" "$work/vgg/model.torchvision.pt" \
  "$work/vgg/model.torchvision.probe.pt" 2>&1)
code=$?
set -e
echo "$message"
[[ $code == 2 && $message == *"width 0.0625: torchvision builds width 1 only"* ]] || { echo "expected a refusal (exit 2), got $code"; exit 1; }
# A run folder without a finished model is named.
mkdir -p "$work/unfinished" && cp "$work/vgg/config.yaml" "$work/unfinished/"
set +e
message=$("$ldrop" export "$work/unfinished" 2>&1)
code=$?
set -e
[[ $code == 1 && $message == *"has no model.pt and summary.json: the run has not finished"* ]] || { echo "got $code: $message"; exit 1; }
echo "export checks passed"
