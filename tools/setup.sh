#!/usr/bin/env bash
# Installs every Debian package LearnDrop needs and builds it (Release) into
# build/, with the command line at build/bin/ldrop.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  cmake make g++ ccache            # toolchain (ccache speeds up rebuilds)
  libtorch-dev                     # LibTorch 1.13 (CPU)
  libgloo-dev                      # c10d's Gloo backend headers (ldrop run --nproc, docs/distributed.md)
  libopenblas0-openmp              # fast BLAS behind libblas.so.3 (reference BLAS is ~15x slower)
  libboost-dev                     # Boost.DLL (plugin loading)
  libyaml-cpp-dev                  # configs
  libspdlog-dev libfmt-dev         # logging, shared by host and plugins
  libtbb-dev                       # parallel cache gathers
  libjemalloc-dev                  # the executables' malloc: keeps freed pages (3x faster steps here; core/src/alloc/malloc_conf.cpp)
  nlohmann-json3-dev               # metrics.jsonl, summary.json, plugins --json
  libcli11-dev                     # command-line parsing
  zlib1g-dev                       # .gz idx files
  libarchive-dev                   # cifar-10-binary.tar.gz
  libturbojpeg0-dev pkg-config     # Imagenette JPEGs (libjpeg-turbo, DCT scaling)
  libsqlite3-dev                   # suite results database (results.db)
  pybind11-dev python3-dev         # drop criteria in Python (plugins/policies/python.cpp embeds CPython)
  python3-matplotlib               # suite report plots (tools/plot_suite.py)
  python3-yaml                     # tools/bench/suite_share.py copies a suite file
  python3-torch python3-torchvision  # ldrop export checked against torchvision (tools/export/check_torchvision.py)
  libgtest-dev libgmock-dev        # tests
  clang-14 libclang-rt-14-dev      # fuzz targets (tools/fuzz.sh: libFuzzer, ASan, UBSan)
  dataset-fashion-mnist            # the quickstart's data (/usr/share/datasets/fashion-mnist)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# LibTorch links libblas.so.3: make sure it resolves to OpenBLAS.
blas=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || true)
if [[ $blas != *openblas* ]]; then
  echo "setup: warning: libblas.so.3 is $blas, not OpenBLAS; training will be slow" >&2
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > build.log 2>&1 || { cat build.log; exit 1; }
echo "setup: building into build/ (log: build.log)"
cmake --build build -j"$(nproc)" >> build.log 2>&1 || { tail -50 build.log; exit 1; }
echo "setup: done; the command line is build/bin/ldrop"
