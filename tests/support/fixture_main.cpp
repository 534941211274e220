// ldrop_test_fixture DIR [--raw]: writes the small idx data set the tests use
// (for shell-level tests such as the out-of-tree example plugin).
#include <cstdio>
#include <cstring>

#include "idx_fixture.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIR [--raw]\n", argv[0]);
    return 2;
  }
  ld::test::IdxFixture f;
  f.gzip = !(argc > 2 && std::strcmp(argv[2], "--raw") == 0);
  ld::test::write_idx_fixture(argv[1], f);
  return 0;
}
