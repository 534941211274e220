// The run folder's files: written to a temporary name and renamed; a write
// that fails is a clear error and leaves nothing half-written.
#include <gtest/gtest.h>

#include <fstream>

#include <sys/resource.h>
#include <unistd.h>

#include <torch/nn/modules/linear.h>

#include "learndrop/cache.h"
#include "learndrop/core/interrupt.h"
#include "run/run_output.h"
#include "test_env.h"

namespace ld::core {

// Issue 12, CLI finding 1: a full disk while saving model.pt terminated the
// process (LibTorch's file writer threw from its destructor) and left
// .model.pt.tmp<pid> behind.
TEST(RunOutput, AFullDiskWhileSavingTheModelIsAClearErrorAndLeavesNoTemporaryFile) {
  install_interrupt_handlers();  // ignores SIGXFSZ, as ldrop does
  test::TempDir dir;
  RunOutput out(dir.path());
  out.append_metrics({{"epoch", 1}, {"train_loss", 0.5}});
  torch::nn::Linear big(256, 256);  // 257 KiB of parameters
  struct rlimit old {};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  struct rlimit small = old;
  small.rlim_cur = 64 * 1024;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  const std::string e = test::error_of([&] { out.save_model(*big); });
  setrlimit(RLIMIT_FSIZE, &old);
  EXPECT_NE(e.find("cannot write " + (dir.path() / "model.pt").string()), std::string::npos) << e;
  EXPECT_NE(e.find("file size limit exceeded"), std::string::npos) << e;
  for (const auto& f : std::filesystem::directory_iterator(dir.path())) {
    EXPECT_EQ(f.path().filename().string().find(".model.pt.tmp"), std::string::npos) << "left " << f.path();
  }
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "model.pt"));
  std::ifstream metrics(dir.path() / "metrics.jsonl");
  std::string line;
  ASSERT_TRUE(std::getline(metrics, line));
  EXPECT_EQ(nlohmann::json::parse(line)["epoch"], 1) << "the metrics already written stay valid";
  out.save_model(*big);  // and with room, the same call works
  EXPECT_GT(std::filesystem::file_size(dir.path() / "model.pt"), 256u * 256u * 4u);
}

// Issue 22: two runs with the same --out both exited 0, one's files replacing
// the other's. The folder is locked while a run owns it.
TEST(RunOutput, AFolderInUseIsRefusedNamingTheProcess) {
  test::TempDir dir;
  {
    RunOutput first(dir.path());
    const std::string e = test::error_of([&] { RunOutput second(dir.path()); });
    char host[256] = {};
    ASSERT_EQ(::gethostname(host, sizeof host - 1), 0);
    EXPECT_NE(e.find("run folder " + dir.str() + " is in use by another run (process " + std::to_string(::getpid()) +
                     "@" + host + ")"),
              std::string::npos)
        << e;
    EXPECT_TRUE(std::filesystem::exists(dir.path() / ".lock"));
  }
  // Issue 31, defect 10: a finished run left its .lock behind, and the
  // half-written checkpoint of a run that died stayed forever.
  std::filesystem::create_directories(dir.path() / ".checkpoint.tmp-99999999");
  std::ofstream(dir.path() / ".checkpoint.tmp-99999999" / "tensors.pt") << "partial";
  EXPECT_FALSE(std::filesystem::exists(dir.path() / ".lock"));
  RunOutput again(dir.path());  // released with the first
  EXPECT_FALSE(std::filesystem::exists(dir.path() / ".checkpoint.tmp-99999999"));
}

// Issue 22: a new run in a folder removed the old run's checkpoints but left
// the disk cache files kept for them.
TEST(RunOutput, ANewRunRemovesTheCacheKeptForTheOldRunsCheckpoint) {
  test::TempDir dir;
  std::filesystem::create_directories(dir.path() / "cache" / "other");
  const auto kept = dir.path() / "cache" / ld::kept_cache_file("ldcache-cut4-0123456789abcdef");
  const auto mine = dir.path() / "cache" / "notes.txt";
  const auto almost = dir.path() / "cache" / "kept.bin";  // no stem: not a kept cache
  std::ofstream(kept) << "rows";
  std::ofstream(mine) << "mine";
  std::ofstream(almost) << "mine";
  std::filesystem::create_directories(dir.path() / "checkpoint");
  { RunOutput out(dir.path()); }
  EXPECT_FALSE(std::filesystem::exists(kept));
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "checkpoint"));
  EXPECT_TRUE(std::filesystem::exists(mine)) << "only the kept cache files go";
  EXPECT_TRUE(std::filesystem::exists(almost)) << "only the kept cache files go";
}

}  // namespace ld::core
