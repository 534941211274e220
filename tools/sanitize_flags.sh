# Sourced by tools/test.sh --sanitize and tools/fuzz.sh: the CMake flags of
# build-sanitize/, one clang build that serves both the sanitized test suite
# and the fuzz targets, so that CI compiles the code once for both. Sets
# the array sanitize_cmake_flags.
#
# - clang-14: with ASan it compiles our LibTorch units about 2.5x faster
#   than g++ (drop_controller.cpp: 11 s against 28 s here), and libFuzzer
#   needs it.
# - -O1 -gline-tables-only: what sanitizer reports need (file:line in their
#   stacks); full debug info only made the build slower.
# - fuzzer-no-link: coverage counters in core and the plugins for
#   libFuzzer; executables without libFuzzer (the tests, ldrop) get the
#   sanitizer runtime's no-op hooks.
# - the system allocator: ASan replaces malloc itself, not jemalloc.
sanitize_cxx=$(command -v clang++-14 || command -v clang++ || true)
sanitize_cc=$(command -v clang-14 || command -v clang || true)
if [[ -z $sanitize_cxx || -z $sanitize_cc ]]; then
  echo "no clang found for build-sanitize/; tools/setup.sh installs clang-14 and its sanitizer runtimes" >&2
  exit 2
fi
sanitize_compile="-fsanitize=address,undefined,fuzzer-no-link -fno-sanitize=vptr -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
sanitize_cmake_flags=(
  -DCMAKE_BUILD_TYPE=RelWithDebInfo
  "-DCMAKE_CXX_COMPILER=$sanitize_cxx" "-DCMAKE_C_COMPILER=$sanitize_cc"
  "-DCMAKE_CXX_FLAGS=$sanitize_compile" "-DCMAKE_C_FLAGS=$sanitize_compile"
  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only -DNDEBUG"
  "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only -DNDEBUG"
  "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address,undefined"
  -DLEARNDROP_ALLOCATOR=system
  -DLEARNDROP_BUILD_FUZZ=ON
)
