// The SDK's cache conformance suite on the example backend.
#include <learndrop/testing/conformance.h>

#include "row_list_cache.h"

using ld::testing::CacheConformance;  // GoogleTest needs the bare suite name

INSTANTIATE_TEST_SUITE_P(RowList, CacheConformance,
                         ::testing::Values(ld::testing::CacheFactory{
                             "row-list", [] { return std::make_shared<example::RowListCache>(); }}));
