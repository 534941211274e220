#pragma once
/// Conformance tests for plugin authors: GoogleTest suites that check what
/// the host relies on. Instantiate them with your factory in a test of your
/// own (link GTest::gtest_main):
///
/// ```
/// #include <learndrop/testing/conformance.h>
///
/// using ld::testing::CacheConformance;  // GoogleTest needs the bare suite names
/// using ld::testing::PolicyConformance;
/// INSTANTIATE_TEST_SUITE_P(MyCache, CacheConformance,
///     ::testing::Values(ld::testing::CacheFactory{"my-cache", [] { return std::make_shared<MyCache>(); }}));
/// INSTANTIATE_TEST_SUITE_P(MyPolicy, PolicyConformance,
///     ::testing::Values(ld::testing::PolicyFactory{"my-policy", [](const ld::PolicyContext& c) {
///       return std::make_shared<MyPolicy>(c); }}));
/// ```
///
/// Header-only; it uses only the SDK and GoogleTest. It defines the test
/// cases, so include it in one test source file per test binary.

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "learndrop/cache.h"
#include "learndrop/policy.h"
#include "learndrop/testing/cache_helpers.h"

namespace ld::testing {

struct CacheFactory {
  std::string name;
  std::function<std::shared_ptr<FeatureCache>()> make;
};
inline void PrintTo(const CacheFactory& f, std::ostream* os) { *os << f.name; }

struct PolicyFactory {
  std::string name;
  std::function<std::shared_ptr<DropPolicy>(const PolicyContext&)> make;
};
inline void PrintTo(const PolicyFactory& f, std::ostream* os) { *os << f.name; }

/// A cache backend: rows come back bit-identical (float32) in any order,
/// through `get` and through readers of any batch size; half-precision
/// storage rounds within its stated bound and `get` returns the storage
/// type; bytes and read statistics are reported.
class CacheConformance : public ::testing::TestWithParam<CacheFactory> {};
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(CacheConformance);

TEST_P(CacheConformance, RowsComeBackBitIdenticalInAnyOrderThroughGetAndReaders) {
  at::manual_seed(1);
  const at::Tensor source = at::randn({103, 5, 3, 4});
  auto cache = GetParam().make();
  fill_cache(*cache, source, at::kFloat);
  EXPECT_GE(cache->bytes(), 103 * 60 * 4);
  std::mt19937 rng(7);
  for (int round = 0; round < 5; ++round) {
    std::vector<std::int64_t> order(103);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<std::int64_t> some(order.begin(), order.begin() + 1 + static_cast<std::ptrdiff_t>(rng() % 60));
    EXPECT_TRUE(cache->get(some).cpu().equal(source.index_select(0, at::tensor(some, at::kLong))));
    const auto batch = static_cast<std::int64_t>(1 + rng() % 40);
    auto reader = cache->reader(order, batch);
    std::vector<at::Tensor> parts;
    for (at::Tensor t = reader->next(); t.defined(); t = reader->next()) parts.push_back(t.cpu());
    EXPECT_EQ(static_cast<std::int64_t>(parts.size()), (103 + batch - 1) / batch);
    EXPECT_TRUE(at::cat(parts).equal(source.index_select(0, at::tensor(order, at::kLong))));
  }
  EXPECT_GT(cache->stats().bytes_read, 0);
}

TEST_P(CacheConformance, HalfPrecisionStorageRoundsWithinItsBoundAndGetReturnsTheStorageType) {
  at::manual_seed(2);
  const at::Tensor source = at::randn({40, 64}) * 10;
  // Round to nearest: 2^-11 relative for float16 (2^-25 absolute for its
  // subnormals), 2^-8 for bfloat16.
  for (auto [dtype, rel, abs] : {std::tuple{at::kHalf, std::ldexp(1.0, -11), std::ldexp(1.0, -25)},
                                 std::tuple{at::kBFloat16, std::ldexp(1.0, -8), 0.0}}) {
    auto cache = GetParam().make();
    fill_cache(*cache, source, dtype);
    std::vector<std::int64_t> all(40);
    std::iota(all.begin(), all.end(), 0);
    const at::Tensor stored = cache->get(all);
    EXPECT_EQ(stored.scalar_type(), dtype) << "get returns the storage type";
    const at::Tensor back = stored.cpu().to(at::kFloat);
    const at::Tensor excess = (back - source).abs() - (source.abs() * rel + abs);
    EXPECT_LE(excess.max().item<double>(), 0.0) << c10::toString(dtype);
  }
}

TEST_P(CacheConformance, AReaderMayOutliveTheLastBatchAndARowOutOfRangeIsAnError) {
  auto cache = GetParam().make();
  fill_cache(*cache, at::arange(12, at::kFloat).view({12, 1}), at::kFloat);
  {
    auto reader = cache->reader({3, 1, 2}, 2);
    EXPECT_EQ(reader->next().size(0), 2);
    // Destroyed with a batch still unread (the host stops mid-epoch at a drop).
  }
  EXPECT_ANY_THROW(cache->get({12}));
  EXPECT_ANY_THROW(cache->get({-1}));
}

// Rows written by `put` in shuffled batches of 7 (as fill_cache does).
inline void put_rows(FeatureCache& cache, const at::Tensor& source, std::int64_t from, std::int64_t to) {
  std::vector<std::int64_t> rows(static_cast<std::size_t>(to - from));
  std::iota(rows.begin(), rows.end(), from);
  std::shuffle(rows.begin(), rows.end(), std::mt19937(5));
  for (std::size_t b = 0; b < rows.size(); b += 7) {
    std::vector<std::int64_t> part(rows.begin() + static_cast<std::ptrdiff_t>(b),
                                   rows.begin() + static_cast<std::ptrdiff_t>(std::min(rows.size(), b + 7)));
    cache.put(part, source.index_select(0, at::tensor(part, at::kLong)).to(cache.device()));
  }
}

inline void expect_rows(FeatureCache& cache, const at::Tensor& source) {
  std::vector<std::int64_t> order(static_cast<std::size_t>(source.size(0)));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937(11));
  EXPECT_TRUE(cache.get(order).cpu().equal(source.index_select(0, at::tensor(order, at::kLong))));
  auto reader = cache.reader(order, 9);
  std::vector<at::Tensor> parts;
  for (at::Tensor t = reader->next(); t.defined(); t = reader->next()) parts.push_back(t.cpu());
  EXPECT_TRUE(at::cat(parts).equal(source.index_select(0, at::tensor(order, at::kLong))));
}

// put writes each row once, in range, between begin (or grow) and finish;
// anything else is an error, and so is a finish with rows missing.
TEST_P(CacheConformance, PutRefusesRowsOutOfRangeTwiceOrAfterFinishAndFinishRefusesMissingRows) {
  const at::Tensor source = at::arange(60, at::kFloat).view({20, 3});
  auto cache = GetParam().make();
  cache->begin(CacheLayout{1, 20, {3}, at::kFloat, "00000000000000ab"});
  auto rows = [&](std::vector<std::int64_t> r) { return source.index_select(0, at::tensor(r, at::kLong)).to(cache->device()); };
  cache->put({0, 1}, rows({0, 1}));
  EXPECT_ANY_THROW(cache->put({1}, rows({1}))) << "a row written twice";
  EXPECT_ANY_THROW(cache->put({20}, rows({0}))) << "a row past the end";
  EXPECT_ANY_THROW(cache->put({-1}, rows({0}))) << "a negative row";
  EXPECT_ANY_THROW(cache->finish()) << "18 rows never written";
  auto other = GetParam().make();
  other->begin(CacheLayout{1, 20, {3}, at::kFloat, "00000000000000ac"});
  put_rows(*other, source, 0, 20);
  other->finish();
  EXPECT_ANY_THROW(other->put({3}, rows({3}))) << "a put after finish";
  expect_rows(*other, source);
}

// Data that arrive later: a cache that grows in place keeps every old row
// bit for bit, takes exactly the new ones, and reads all of them afterwards.
TEST_P(CacheConformance, GrowingAddsTheNewRowsAndKeepsTheOldOnesBitIdentical) {
  at::manual_seed(4);
  const at::Tensor source = at::randn({200, 4, 2, 3});
  auto cache = GetParam().make();
  cache->begin(CacheLayout{2, 50, {4, 2, 3}, at::kFloat, "00000000000000ad"});
  put_rows(*cache, source, 0, 50);
  cache->finish();
  expect_rows(*cache, source.narrow(0, 0, 50));
  if (!cache->grow(60)) GTEST_SKIP() << "the cache does not grow in place (the host copies its rows instead)";
  EXPECT_ANY_THROW(cache->put({10}, source.narrow(0, 10, 1).to(cache->device()))) << "an old row written again";
  put_rows(*cache, source, 50, 60);
  cache->finish();
  expect_rows(*cache, source.narrow(0, 0, 60));
  ASSERT_TRUE(cache->grow(200)) << "past any spare capacity";
  put_rows(*cache, source, 60, 199);
  EXPECT_ANY_THROW(cache->finish()) << "row 199 never written";
  put_rows(*cache, source, 199, 200);
  cache->finish();
  expect_rows(*cache, source);
  EXPECT_GE(cache->bytes(), 200 * 24 * 4);
  EXPECT_ANY_THROW(cache->grow(100)) << "a cache does not shrink";
}

/// A drop policy: decisions stay within [0, num_stages], are deterministic
/// for the same inputs, and period_steps is not negative.
class PolicyConformance : public ::testing::TestWithParam<PolicyFactory> {};
// A plugin library may hold a cache or a policy alone: one suite left
// uninstantiated is not an error.
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(PolicyConformance);

namespace detail {
// A synthetic run: changes decay from the first stage on, gradients shrink.
inline PolicyInput point(std::int64_t i, std::size_t stages, std::size_t cut) {
  PolicyInput in;
  in.eval_point = i;
  in.step = 100 * i;
  in.epoch = static_cast<double>(i) / 2;
  in.cut = cut;
  in.train_loss = 2.0 / static_cast<double>(i + 1);
  in.lr = 0.05;
  in.lr_sum = 5.0;
  in.steps_since_point = 100;
  for (std::size_t s = 0; s < stages; ++s) {
    StageStats st;
    st.name = "stage" + std::to_string(s);
    st.dropped = s < cut;
    st.num_params = 1000;
    st.param_norm = 10;
    st.relative_change =
        st.dropped ? 0 : 0.5 * std::exp(-0.4 * static_cast<double>(i) / (1.0 + static_cast<double>(s)));
    st.grad_norm = st.dropped ? 0 : 1.0 / static_cast<double>(i + 1);
    st.mean_grad_norm = st.grad_norm;
    in.stages.push_back(st);
  }
  return in;
}
}  // namespace detail

TEST_P(PolicyConformance, DecisionsStayInRangeAndAreDeterministic) {
  const PolicyContext ctx{6, 100, 20, 0};
  auto a = GetParam().make(ctx);
  auto b = GetParam().make(ctx);
  EXPECT_GE(a->period_steps(), 0);
  std::size_t cut = 0;
  for (std::int64_t i = 1; i <= 40; ++i) {
    const PolicyInput in = detail::point(i, ctx.num_stages, cut);
    const Decision da = a->decide(in);
    const Decision db = b->decide(in);
    EXPECT_LE(da.cut, ctx.num_stages) << "point " << i;
    EXPECT_EQ(da.cut, db.cut) << "two instances disagree on the same inputs at point " << i;
    EXPECT_EQ(da.reason, db.reason) << "point " << i;
    cut = std::max(cut, std::min(da.cut, ctx.num_stages));  // what the host applies
  }
}

// A policy with state (has_state) restored from save_state at any point
// decides exactly as the one that went on: what a resumed run needs.
TEST_P(PolicyConformance, SavedStateRestoresTheSameDecisions) {
  const PolicyContext ctx{6, 100, 20, 0};
  if (!GetParam().make(ctx)->has_state()) GTEST_SKIP() << "the policy does not save its state";
  for (std::int64_t saved_at : {1, 5, 17}) {
    SCOPED_TRACE("saved after point " + std::to_string(saved_at));
    auto a = GetParam().make(ctx);
    std::size_t cut = 0;
    std::int64_t i = 1;
    for (; i <= saved_at; ++i)
      cut = std::max(cut, std::min(a->decide(detail::point(i, ctx.num_stages, cut)).cut, ctx.num_stages));
    const PolicyState state = a->save_state();
    auto b = GetParam().make(ctx);
    b->load_state(state);
    EXPECT_EQ(b->save_state().values, state.values) << "the restored state saves differently";
    for (; i <= 40; ++i) {
      const PolicyInput in = detail::point(i, ctx.num_stages, cut);
      const Decision da = a->decide(in);
      const Decision db = b->decide(in);
      ASSERT_EQ(da.cut, db.cut) << "point " << i;
      ASSERT_EQ(da.reason, db.reason) << "point " << i;
      cut = std::max(cut, std::min(da.cut, ctx.num_stages));
    }
  }
}

}  // namespace ld::testing
