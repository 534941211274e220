// ldrop_test_fixture DIR [--raw | --cifar PER_BATCH]: writes the small idx
// data set the tests use (gzip, or raw with --raw), or with --cifar a
// CIFAR-10 binary set of 5 x PER_BATCH training and PER_BATCH test records
// (for shell-level tests such as the out-of-tree example plugin, and for
// tools/gpu/check.sh where no real CIFAR-10 is at hand).
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "cifar_fixture.h"
#include "idx_fixture.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIR [--raw | --cifar PER_BATCH]\n", argv[0]);
    return 2;
  }
  if (argc > 3 && std::strcmp(argv[2], "--cifar") == 0) {
    ld::test::CifarFixture c;
    c.per_batch = std::atoi(argv[3]);
    c.batches = 5;
    c.test = c.per_batch;
    if (c.per_batch < 1) {
      std::fprintf(stderr, "--cifar: expected a positive number of records per batch, got '%s'\n", argv[3]);
      return 2;
    }
    ld::test::write_cifar_fixture(argv[1], c);
    return 0;
  }
  ld::test::IdxFixture f;
  f.gzip = !(argc > 2 && std::strcmp(argv[2], "--raw") == 0);
  ld::test::write_idx_fixture(argv[1], f);
  return 0;
}
