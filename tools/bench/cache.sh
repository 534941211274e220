#!/usr/bin/env bash
# Disk cache against the disk and against the RAM cache, on one machine:
#  1. raw sequential read bandwidth of the disk under the cache folder (dd with
#     O_DIRECT, so the page cache is bypassed);
#  2. the disk cache's shuffled read bandwidth with nothing else running (the
#     reader is the bottleneck; page cache dropped before each pass);
#  3. epoch time with the ram and the disk cache at the same cut (resnet18,
#     half width, CIFAR stem, on CIFAR-10, cut 1 = 128 KiB per sample, fixed
#     drop after epoch 1; disk with drop_page_cache), and the bandwidth the
#     disk cache delivered during training.
# Prints a table and the two ratios the targets are about (disk epoch / ram
# epoch <= 1.15; cache read / raw read >= 0.70).
#
# Data: $LEARNDROP_DATA (default ../shared/data) with cifar10/.
# Usage: tools/bench/cache.sh [CACHE_DIR] [TRAIN_SAMPLES]   (default bench-runs/cache, 4000)
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-bench-runs/cache}
samples=${2:-4000}
export LEARNDROP_DATA=${LEARNDROP_DATA:-../shared/data}
ldrop=build/bin/ldrop
[[ -x $ldrop ]] || bash tools/setup.sh
mkdir -p "$dir"
out=bench-runs/cache-$(date +%Y%m%d-%H%M%S)

mib_per_s() {  # dd's summary line -> MiB/s
  sed -n 's/^\([0-9]*\) bytes.* copied, \([0-9.]*\) s.*/\1 \2/p' | awk '{ printf "%.1f", $1 / $2 / 1048576 }'
}
raw_file=$dir/raw-read-test.bin
dd if=/dev/zero of="$raw_file" bs=4M count=512 oflag=direct conv=fsync status=none
raw=$(dd if="$raw_file" of=/dev/null bs=4M iflag=direct 2>&1 | mib_per_s)
rm -f "$raw_file"

bench=$("$ldrop" cache bench --dir "$dir" --rows 8192 --row-bytes 131072 --batch 128 --prefetch 4 --threads 2)
echo "$bench"
cache_read=$(sed -n 's/.*shuffled read \([0-9.]*\) MiB\/s.*/\1/p' <<<"$bench")

sets=(--set dataset.augment=none --set cache.views=1 --set dataset.train_limit="$samples"
      --set dataset.test_limit=1000 --set train.epochs=3 --set policy.plugin=fixed --set policy.cut=1
      --set policy.epoch=1)
"$ldrop" run configs/cifar10-resnet18.yaml "${sets[@]}" --set cache.plugin=ram --out "$out/ram" --quiet
"$ldrop" run configs/cifar10-resnet18.yaml "${sets[@]}" --set cache.plugin=disk --set cache.dir="$dir" \
  --set cache.drop_page_cache=true --out "$out/disk" --quiet

after_drop() {  # RUN FIELD -> sum of FIELD over the epochs after the drop (2 and 3)
  awk -v f="\"$2\":" 'NR > 1 { split($0, a, f); split(a[2], b, /[,}]/); s += b[1] } END { print s }' "$1/metrics.jsonl"
}
ram_epoch=$(awk -v s="$(after_drop "$out/ram" train_seconds)" 'BEGIN { printf "%.1f", s / 2 }')
disk_epoch=$(awk -v s="$(after_drop "$out/disk" train_seconds)" 'BEGIN { printf "%.1f", s / 2 }')
disk_bytes=$(after_drop "$out/disk" cache_read_bytes)
disk_wait=$(after_drop "$out/disk" cache_wait_seconds)
delivered=$(awk -v b="$disk_bytes" -v e="$disk_epoch" 'BEGIN { printf "%.1f", b / (2 * e) / 1048576 }')

echo
printf '%-52s %12s\n' measurement value
printf '%-52s %9s MiB/s\n' "raw sequential read (dd, O_DIRECT, 2 GiB)" "$raw"
printf '%-52s %9s MiB/s\n' "disk cache shuffled read, reader alone (1 GiB)" "$cache_read"
printf '%-52s %9s s\n' "epoch with ram cache at cut 1 (mean of 2)" "$ram_epoch"
printf '%-52s %9s s\n' "epoch with disk cache at cut 1 (mean of 2)" "$disk_epoch"
printf '%-52s %9s MiB/s\n' "disk cache delivered during training" "$delivered"
printf '%-52s %9.1f s\n' "pipeline waited for the disk cache (2 epochs)" "$disk_wait"
echo
awk -v d="$disk_epoch" -v r="$ram_epoch" -v c="$cache_read" -v w="$raw" 'BEGIN {
  printf "disk epoch / ram epoch: %.3f (target <= 1.15)\n", d / r
  printf "cache read / raw read:  %.3f (target >= 0.70)\n", c / w }' | tee "$out/ratios.txt"
