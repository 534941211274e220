// The checkpoint folder: written whole or not at all, checked against its
// manifest when read, and the older checkpoint used when the newer is bad.
#include <gtest/gtest.h>

#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <cmath>
#include <filesystem>
#include <fstream>

#include <ATen/ATen.h>

#include "learndrop/core/checkpoint.h"
#include "test_env.h"

namespace ld::core {

namespace {

namespace fs = std::filesystem;

Checkpoint sample(std::int64_t epoch) {
  Checkpoint c;
  c.meta["epoch"] = epoch;
  c.tensors["weights"] = at::arange(6, at::kFloat).view({2, 3}) * static_cast<double>(epoch);
  c.tensors["doubles"] = at::tensor(std::vector<double>{0.1, std::nan(""), -0.0, 1e308}, at::kDouble);
  c.optimizer = "optimizer bytes " + std::to_string(epoch);
  return c;
}

}  // namespace

TEST(Checkpoint, RoundTripsExactlyAndKeepsTheOlderOne) {
  test::TempDir dir;
  EXPECT_FALSE(has_checkpoint(dir.path()));
  write_checkpoint(dir.path(), sample(1));
  EXPECT_FALSE(fs::exists(dir.path() / "checkpoint.prev"));
  write_checkpoint(dir.path(), sample(2));
  EXPECT_TRUE(has_checkpoint(dir.path()));
  const Checkpoint c = read_checkpoint(dir.path());
  EXPECT_EQ(c.from, dir.path() / "checkpoint");
  EXPECT_EQ(c.meta["epoch"], 2);
  EXPECT_EQ(c.optimizer, "optimizer bytes 2");
  EXPECT_TRUE(at::equal(c.tensor("weights"), sample(2).tensors["weights"]));
  const at::Tensor d = c.tensor("doubles");
  EXPECT_EQ(d[0].item<double>(), 0.1);
  EXPECT_TRUE(std::isnan(d[1].item<double>()));
  EXPECT_TRUE(std::signbit(d[2].item<double>()));
  EXPECT_EQ(d[3].item<double>(), 1e308);
  EXPECT_EQ(test::error_of([&] { c.tensor("absent"); }),
            "checkpoint " + (dir.path() / "checkpoint").string() + " has no tensor 'absent'");
  // The older one is the epoch-1 checkpoint; no temporary folder is left.
  for (const auto& e : fs::directory_iterator(dir.path())) {
    EXPECT_EQ(e.path().filename().string().find(".checkpoint.tmp"), std::string::npos) << e.path();
  }
  EXPECT_TRUE(fs::exists(dir.path() / "checkpoint.prev" / "MANIFEST.json"));
}

TEST(Checkpoint, AnIncompleteOrCorruptNewerOneFallsBackToTheOlder) {
  test::TempDir dir;
  write_checkpoint(dir.path(), sample(1));
  write_checkpoint(dir.path(), sample(2));
  // A write cut short before its manifest.
  fs::remove(dir.path() / "checkpoint" / "MANIFEST.json");
  Checkpoint c = read_checkpoint(dir.path());
  EXPECT_EQ(c.meta["epoch"], 1);
  EXPECT_EQ(c.from, dir.path() / "checkpoint.prev");

  // Both bad: an error naming each file at fault.
  const fs::path state = dir.path() / "checkpoint.prev" / "state.json";
  std::ofstream(state, std::ios::app) << " ";
  const std::string e = test::error_of([&] { read_checkpoint(dir.path()); });
  EXPECT_NE(e.find("no usable checkpoint in " + dir.str()), std::string::npos) << e;
  EXPECT_NE(e.find((dir.path() / "checkpoint" / "MANIFEST.json").string() + " is missing"), std::string::npos) << e;
  EXPECT_NE(e.find(state.string() + " is truncated or overwritten"), std::string::npos) << e;

  // None at all.
  test::TempDir empty;
  EXPECT_NE(test::error_of([&] { read_checkpoint(empty.path()); }).find("checkpoint does not exist"),
            std::string::npos);
}

TEST(Checkpoint, AFailedWriteLeavesTheCurrentOneUntouched) {
  test::TempDir dir;
  write_checkpoint(dir.path(), sample(1));
  // A file size limit (as a full disk would) fails the write of a larger checkpoint.
  Checkpoint big = sample(2);
  big.optimizer.assign(1 << 20, 'x');
  struct rlimit old {};
  ::getrlimit(RLIMIT_FSIZE, &old);
  const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old;
  small.rlim_cur = 64 * 1024;
  ::setrlimit(RLIMIT_FSIZE, &small);
  const std::string e = test::error_of([&] { write_checkpoint(dir.path(), big); });
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_NE(e.find("cannot write " + dir.str() + "/.checkpoint.tmp-"), std::string::npos) << e;
  EXPECT_NE(e.find("optimizer.pt: File too large"), std::string::npos) << e;
  EXPECT_EQ(read_checkpoint(dir.path()).meta["epoch"], 1);
  EXPECT_FALSE(fs::exists(dir.path() / "checkpoint.prev"));
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    EXPECT_EQ(entry.path().filename().string().find(".checkpoint.tmp"), std::string::npos) << entry.path();
  }
}

}  // namespace ld::core
