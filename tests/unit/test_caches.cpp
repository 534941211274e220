// The cache plugins (device, ram, disk, auto) through the SDK interface;
// `device` on a CPU run keeps its rows in a CPU tensor.
#include <gtest/gtest.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <random>

#include <sys/resource.h>
#include <unistd.h>

#include <ATen/ATen.h>

#include "learndrop/core/interrupt.h"
#include "learndrop/memory.h"
#include "learndrop/registrar.h"
#include "learndrop/row_ledger.h"
#include "learndrop/testing/cache_helpers.h"
#include "test_env.h"

namespace ld::core {

namespace {

namespace fs = std::filesystem;

// A cache whose files go in `dir` (CacheContext::dir; the run folder is `dir` too).
std::shared_ptr<FeatureCache> make(const std::string& plugin, const std::string& dir,
                                   std::map<std::string, std::string> set = {}, const std::string& files = "") {
  static auto host = test::builtin_host();
  CacheContext ctx{dir, 2};
  ctx.dir = files.empty() ? dir : files;
  return host->create_cache(plugin, test::plugin_options(*host, PluginKind::kCache, plugin, set), ctx);
}

CacheLayout layout(std::int64_t count, std::vector<std::int64_t> shape, at::ScalarType dtype = at::kFloat,
                   const std::string& key = "00000000000000aa") {
  return CacheLayout{1, count, std::move(shape), dtype, key};
}

void fill(FeatureCache& cache, const at::Tensor& source, at::ScalarType dtype = at::kFloat) {
  ld::testing::fill_cache(cache, source, dtype);
}

std::vector<fs::path> cache_files(const fs::path& dir) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(dir, ec)) {
    if (e.path().filename().string().find("ldcache-") != std::string::npos) files.push_back(e.path());
  }
  return files;
}

using test::error_of;

}  // namespace

// The contract every backend keeps (bit-identical rows, storage types,
// readers) is checked by the SDK's conformance suite: test_conformance.cpp.

TEST(DiskCache, PrefetchingReadersYieldEveryRowOnceInOrderUnderStress) {
  test::TempDir dir;
  const std::int64_t n = 257;
  // Row i holds the value i everywhere, so a batch names its rows.
  at::Tensor source = at::arange(n, at::kFloat).view({n, 1}).expand({n, 96}).contiguous();
  std::mt19937 rng(11);
  for (const char* prefetch : {"1", "3", "16"}) {
    auto cache = make("disk", dir.str(), {{"prefetch", prefetch}});
    fill(*cache, source);
    for (int epoch = 0; epoch < 60; ++epoch) {
      std::vector<std::int64_t> order(static_cast<std::size_t>(n));
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), rng);
      order.resize(static_cast<std::size_t>(n / 2 + static_cast<std::int64_t>(rng() % (n / 2))));
      auto reader = cache->reader(order, static_cast<std::int64_t>(1 + rng() % 37));
      std::vector<std::int64_t> seen;
      for (at::Tensor t = reader->next(); t.defined(); t = reader->next()) {
        for (std::int64_t r = 0; r < t.size(0); ++r) seen.push_back(static_cast<std::int64_t>(t[r][0].item<float>()));
      }
      ASSERT_EQ(seen, order) << "prefetch " << prefetch << ", epoch " << epoch;
      if (epoch % 7 == 0) reader.reset();  // some readers end early
    }
  }
}

TEST(DiskCache, CorruptedTruncatedAndForeignFilesAreDetected) {
  test::TempDir dir;
  at::manual_seed(3);
  at::Tensor source = at::randn({20, 32});
  auto cache = make("disk", dir.str());
  fill(*cache, source);
  auto files = cache_files(dir.path());
  ASSERT_EQ(files.size(), 1u);
  const fs::path file = files[0];
  EXPECT_EQ(file.extension(), ".bin");
  // One flipped byte in row 6: that row fails, the others still read.
  const std::int64_t row6 = 4096 + 6 * 32 * 4 + 10;
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(row6);
    char c = 0;
    f.read(&c, 1);
    f.seekp(row6);
    c = static_cast<char>(c ^ 0x40);
    f.write(&c, 1);
  }
  std::string e = error_of([&] { cache->get({2, 6}); });
  EXPECT_NE(e.find(file.string() + ": checksum mismatch in row 6"), std::string::npos) << e;
  EXPECT_TRUE(cache->get({5, 7}).equal(source.index_select(0, at::tensor({5, 7}, at::kLong))));
  auto reader = cache->reader({0, 1, 6}, 2);
  reader->next();
  e = error_of([&] { reader->next(); });
  EXPECT_NE(e.find("checksum mismatch in row 6"), std::string::npos) << e;
  reader.reset();

  // Another cache's file (another key) in its place.
  test::TempDir other_dir;
  auto other = make("disk", other_dir.str());
  other->begin(layout(20, {32}, at::kFloat, "ffffffffffffffff"));
  other->put(
      [] {
        std::vector<std::int64_t> r(20);
        std::iota(r.begin(), r.end(), 0);
        return r;
      }(),
      source);
  other->finish();
  fs::copy_file(cache_files(other_dir.path())[0], file, fs::copy_options::overwrite_existing);
  e = error_of([&] { cache->get({0}); });
  EXPECT_NE(e.find("is a foreign cache (key ffffffffffffffff"), std::string::npos) << e;

  // A truncated file.
  fs::resize_file(file, 4096 + 100);
  e = error_of([&] { cache->get({0}); });
  EXPECT_NE(e.find(file.string() + " is truncated or overwritten"), std::string::npos) << e;

  // Something else entirely.
  std::ofstream(file, std::ios::binary | std::ios::trunc) << std::string(9000, 'x');
  e = error_of([&] { cache->get({0}); });
  EXPECT_NE(e.find("truncated or overwritten: 9000 bytes"), std::string::npos) << e;
}

TEST(DiskCache, FileSizeLimitIsAClearErrorAndLeavesNoFile) {
  install_interrupt_handlers();  // ignores SIGXFSZ, as ldrop does
  test::TempDir dir;
  struct rlimit old {};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  struct rlimit small = old;
  small.rlim_cur = 64 * 1024;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  auto cache = make("disk", dir.str());
  std::string e = error_of([&] { cache->begin(layout(1000, {256})); });  // ~1 MiB
  auto fallback = make("auto", dir.str(), {{"ram_budget", "0"}});
  std::string fallback_error = error_of([&] { fallback->begin(layout(1000, {256})); });
  setrlimit(RLIMIT_FSIZE, &old);
  EXPECT_NE(e.find("cannot reserve 1007.91 KiB for the cut-1 cache"), std::string::npos) << e;
  EXPECT_NE(e.find("file size limit exceeded"), std::string::npos) << e;
  EXPECT_TRUE(cache_files(dir.path()).empty()) << "a partial cache file was left behind";
  // auto keeps the cut in RAM instead.
  EXPECT_EQ(fallback_error, "(no error)");
  EXPECT_NE(fallback->describe().find("disk failed"), std::string::npos) << fallback->describe();
  EXPECT_EQ(fallback->bytes(), 1000 * 256 * 4);
}

// Issue 31, defect 5: a growth the disk could not hold deleted the complete
// cache file; auto exited instead of keeping the rows in RAM.
TEST(DiskCache, AGrowthTheDiskCannotHoldLeavesTheCacheIntactAndAutoMovesIt) {
  install_interrupt_handlers();  // ignores SIGXFSZ, as ldrop does
  test::TempDir dir;
  const at::Tensor rows = at::randn({8, 256});
  auto disk = make("disk", dir.str());
  auto on_disk = make("auto", dir.str(), {{"ram_budget", "16"}});  // 8 KiB > 16 B: auto on disk
  fill(*disk, rows);
  fill(*on_disk, rows);
  struct rlimit old {};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  struct rlimit small = old;
  small.rlim_cur = 64 * 1024;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  const std::string e = error_of([&] { disk->grow(1000); });  // ~1 MiB
  bool moved = true;
  const std::string auto_error = error_of([&] { moved = !on_disk->grow(1000); });
  setrlimit(RLIMIT_FSIZE, &old);
  EXPECT_NE(e.find("cannot reserve 995.88 KiB for 992 more rows of the cut-1 cache (it keeps its 8 rows)"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("file size limit exceeded"), std::string::npos) << e;
  EXPECT_TRUE(at::equal(disk->get({0, 7}), rows.index_select(0, at::tensor(std::vector<std::int64_t>{0, 7}))))
      << "the rows it had are still there";
  EXPECT_EQ(auto_error, "(no error)");
  EXPECT_TRUE(moved) << "auto answers 'copy me into a new cache' (which begin() keeps in RAM when it fits)";
  EXPECT_TRUE(at::equal(on_disk->get({3}), rows.narrow(0, 3, 1)));
  // And growth works once there is room.
  EXPECT_TRUE(disk->grow(9));
  disk->put({8}, rows.narrow(0, 0, 1));
  disk->finish();
  EXPECT_TRUE(at::equal(disk->get({8}), rows.narrow(0, 0, 1)));
}

TEST(DiskCache, UnwritableFolderIsNamed) {
  test::TempDir dir;
  std::ofstream(dir.path() / "a-file") << "x";
  // Reported when the cache is created (at the start of a run), not at its first begin.
  std::string e = error_of([&] { make("disk", dir.str(), {}, (dir.path() / "a-file" / "cache").string()); });
  EXPECT_NE(e.find("cannot create cache.dir " + (dir.path() / "a-file" / "cache").string()), std::string::npos) << e;
}

TEST(DiskCache, FileIsRemovedWithTheCacheAndStaleFilesOfDeadRunsAreCleaned) {
  test::TempDir dir;
  // A file left by a process that no longer exists (pid 2^22 + 1 is above pid_max defaults).
  const fs::path stale = dir.path() / "ldcache-cut2-0123456789abcdef-4194305.bin";
  std::ofstream(stale) << "left over";
  char host[256] = {};
  ASSERT_EQ(::gethostname(host, sizeof host - 1), 0);
  std::string here = host;
  for (char& c : here) c = std::isalnum(static_cast<unsigned char>(c)) || c == '-' ? c : '_';
  const fs::path stale_here = dir.path() / (".ldcache-cut3-0123456789abcdef-4194305@" + here + ".tmp");
  std::ofstream(stale_here) << "left over";
  // Issue 31, defect 10: on a cache.dir shared across machines, a process of
  // another machine was judged by its PID here, and its live file removed.
  const fs::path elsewhere = dir.path() / "ldcache-cut2-0123456789abcdef-4194305@other-machine.bin";
  std::ofstream(elsewhere) << "in use on another machine";
  {
    auto cache = make("disk", dir.str());
    fill(*cache, at::ones({4, 3}));
    EXPECT_FALSE(fs::exists(stale));
    EXPECT_FALSE(fs::exists(stale_here));
    EXPECT_TRUE(fs::exists(elsewhere));
    fs::remove(elsewhere);
    EXPECT_EQ(cache_files(dir.path()).size(), 1u);
  }
  EXPECT_TRUE(cache_files(dir.path()).empty());
}

TEST(DiskCache, ARetainedFileIsReopenedByItsKeyOnlyWhenIntact) {
  test::TempDir dir;
  const at::Tensor rows = at::randn({6, 2, 3});
  const CacheLayout l = layout(6, {2, 3});
  std::int64_t bytes = 0;
  {
    auto cache = make("disk", dir.str());
    fill(*cache, rows);
    bytes = cache->bytes();
    cache->retain();
  }
  ASSERT_EQ(cache_files(dir.path()).size(), 1u);
  EXPECT_EQ(cache_files(dir.path())[0].filename(), "ldcache-cut1-00000000000000aa-kept.bin");
  // Named as the SDK says, so that a new run in the folder removes it (RunOutput).
  EXPECT_TRUE(ld::is_kept_cache_file(cache_files(dir.path())[0].filename().string()));
  // Another key, count or dtype finds nothing; nothing is removed either.
  EXPECT_FALSE(make("disk", dir.str())->reopen(layout(6, {2, 3}, at::kFloat, "00000000000000bb")));
  EXPECT_FALSE(make("disk", dir.str())->reopen(layout(5, {2, 3})));
  EXPECT_FALSE(make("disk", dir.str())->reopen(layout(6, {2, 3}, at::kHalf)));
  ASSERT_EQ(cache_files(dir.path()).size(), 1u);
  {
    auto cache = make("disk", dir.str());
    ASSERT_TRUE(cache->reopen(l));
    EXPECT_TRUE(at::equal(cache->get({0, 1, 2, 3, 4, 5}), rows));
    EXPECT_EQ(cache->bytes(), bytes);
  }
  EXPECT_TRUE(cache_files(dir.path()).empty());  // adopted, then removed with the cache

  // A kept file whose rows were overwritten is not adopted (size checks the header; rows are checked as read).
  {
    auto cache = make("disk", dir.str());
    fill(*cache, rows);
    cache->retain();
  }
  const fs::path kept = cache_files(dir.path()).at(0);
  fs::resize_file(kept, fs::file_size(kept) - 4);
  EXPECT_FALSE(make("disk", dir.str())->reopen(l));
}

TEST(AutoCache, ReopensOnlyACutItWouldKeepOnDisk) {
  test::TempDir dir;
  const at::Tensor rows = at::randn({8, 4});
  const CacheLayout l = layout(8, {4});
  {
    auto cache = make("auto", dir.str(), {{"ram_budget", "16"}});  // 128 bytes > 16: on disk
    fill(*cache, rows);
    cache->retain();
  }
  ASSERT_EQ(cache_files(dir.path()).size(), 1u);
  EXPECT_FALSE(make("auto", dir.str(), {{"ram_budget", "1GiB"}})->reopen(l));  // it would be in RAM
  auto cache = make("auto", dir.str(), {{"ram_budget", "16"}});
  ASSERT_TRUE(cache->reopen(l));
  EXPECT_TRUE(at::equal(cache->get({7, 0, 3}), rows.index_select(0, at::tensor(std::vector<std::int64_t>{7, 0, 3}))));
  EXPECT_NE(cache->describe().find("reopened"), std::string::npos) << cache->describe();
}

TEST(AutoCache, BudgetIsASizeOrAuto) {
  test::TempDir dir;
  auto small = make("auto", dir.str(), {{"ram_budget", "1KiB"}});
  small->begin(layout(10, {100}));  // 4000 bytes > 1 KiB: disk
  EXPECT_NE(small->describe().find("auto (3.91 KiB > ram_budget 1.00 KiB): disk"), std::string::npos)
      << small->describe();
  auto large = make("auto", dir.str(), {{"ram_budget", "4 KB"}});
  large->begin(layout(10, {100}));  // exactly 4000 bytes: ram
  EXPECT_NE(large->describe().find(": ram"), std::string::npos) << large->describe();
  std::string e = error_of([&] { make("auto", dir.str(), {{"ram_budget", "12 parsecs"}}); });
  EXPECT_NE(e.find("unknown unit 'parsecs'"), std::string::npos) << e;
}

}  // namespace ld::core

// The write contract's bookkeeping every built-in cache uses.
TEST(RowLedger, ARefusedPutMarksNoRowAndFinishNeedsEveryRow) {
  ld::RowLedger ledger("cache test");
  EXPECT_EQ(ld::test::error_of([&] { ledger.claim({0}); }), "cache test: put before begin");
  ledger.begin(4);
  EXPECT_EQ(ld::test::error_of([&] { ledger.claim({0, 1, 1}); }), "cache test: row 1 written twice");
  EXPECT_EQ(ld::test::error_of([&] { ledger.claim({2, 4}); }), "cache test: row 4 out of range [0, 4)");
  ledger.claim({0, 1, 2});  // none was marked by the refused puts
  EXPECT_EQ(ld::test::error_of([&] { ledger.finish(); }), "cache test: finish with 1 rows never written");
  EXPECT_EQ(ld::test::error_of([&] { ledger.grow(6); }), "cache test: grow before finish");
  ledger.claim({3});
  ledger.finish();
  EXPECT_EQ(ld::test::error_of([&] { ledger.claim({3}); }),
            "cache test: put after finish (rows are written between begin or grow and finish)");
  EXPECT_EQ(ld::test::error_of([&] { ledger.grow(4); }), "cache test: grow to 4 rows, but it holds 4 (a cache does not shrink)");
  ledger.grow(6);
  EXPECT_EQ(ld::test::error_of([&] { ledger.claim({3}); }), "cache test: row 3 written twice");
  ledger.claim({5, 4});
  ledger.finish();
  EXPECT_EQ(ledger.count(), 6);
  EXPECT_NO_THROW(ledger.check(5));
  EXPECT_ANY_THROW(ledger.check(6));
}

// Issue 31, defect 10: parse_size("1e30TB") converted 1e42 to int64
// (undefined behaviour).
TEST(ParseSize, UnitsAreReadAndASizeBeyondAnyMemoryIsRefused) {
  EXPECT_EQ(ld::parse_size("cache.ram_budget", "512MiB"), 512LL << 20);
  EXPECT_EQ(ld::parse_size("cache.ram_budget", "2.5GB"), 2500000000LL);
  EXPECT_EQ(ld::parse_size("cache.ram_budget", "1024"), 1024);
  EXPECT_NE(ld::test::error_of([] { ld::parse_size("cache.ram_budget", "1e30TB"); })
                .find("cache.ram_budget: '1e30TB' is larger than any memory"),
            std::string::npos);
  EXPECT_NE(ld::test::error_of([] { ld::parse_size("cache.ram_budget", "4 GiBs"); }).find("unknown unit 'GiBs'"),
            std::string::npos);
}
