// ldrop run CONFIG --nproc N: N local ranks of a data-parallel run, each this
// same command in a process of its own with the environment torchrun gives
// (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT).
// The launcher waits for them: when one fails, the others stop at their next
// collective (c10d), and those that do not within the timeout are killed.
#include "launch.h"

#include <spdlog/spdlog.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "learndrop/core/files.h"
#include "learndrop/core/interrupt.h"
#include "learndrop/error.h"

namespace ld::cli {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// A TCP port that was free a moment ago, for the rendezvous store.
int free_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) throw Error(std::string("--nproc: cannot open a socket: ") + std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(s);
    throw Error(std::string("--nproc: cannot find a free port: ") + std::strerror(errno));
  }
  ::close(s);
  return ntohs(a.sin_port);
}

// This process's arguments, without --nproc and --out (the launcher passes its own --out).
std::vector<std::string> rank_arguments(const std::string& out_dir) {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::vector<std::string> args;
  for (std::string a; std::getline(in, a, '\0');) args.push_back(a);
  if (args.empty()) throw Error("--nproc: cannot read /proc/self/cmdline");
  std::vector<std::string> out;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--nproc" || args[i] == "--out") {
      ++i;
      continue;
    }
    if (args[i].rfind("--nproc=", 0) == 0 || args[i].rfind("--out=", 0) == 0) continue;
    out.push_back(args[i]);
  }
  out.push_back("--out");
  out.push_back(out_dir);
  return out;
}

std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  }
  return "stopped (status " + std::to_string(status) + ")";
}

}  // namespace

int launch_local_ranks(int nproc, const std::string& out_dir, double timeout_seconds) {
  if (const char* w = std::getenv("WORLD_SIZE"); w && std::strcmp(w, "1") != 0 && *w) {
    throw Error(std::string("--nproc: WORLD_SIZE=") + w +
                " is already set (a launcher such as torchrun started this process); drop --nproc");
  }
  const unsigned cores = std::thread::hardware_concurrency();
  if (cores > 0 && static_cast<unsigned>(nproc) > cores) {
    spdlog::warn("--nproc {}: this machine has {} cores; {} ranks share them and train slower than {} would",
                 nproc, cores, nproc, cores);
  }
  const int port = free_port();
  const std::vector<std::string> args = rank_arguments(out_dir);
  for (int r = 1; r < nproc; ++r) fs::create_directories(fs::path(out_dir) / "ranks" / std::to_string(r));
  std::fflush(stdout);
  std::fflush(stderr);
  std::vector<pid_t> pids(static_cast<std::size_t>(nproc), -1);
  for (int r = 0; r < nproc; ++r) {
    const pid_t pid = ::fork();
    if (pid < 0) throw Error(std::string("--nproc: fork failed: ") + std::strerror(errno));
    if (pid == 0) {
      ::setenv("RANK", std::to_string(r).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      if (r > 0) {  // rank 0 keeps the terminal; the others log to their folder
        const std::string log = (fs::path(out_dir) / "ranks" / std::to_string(r) / "console.log").string();
        const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd >= 0) {
          ::dup2(fd, STDOUT_FILENO);
          ::dup2(fd, STDERR_FILENO);
        }
      }
      std::vector<char*> argv;
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv("/proc/self/exe", argv.data());
      std::fprintf(stderr, "error: rank %d: cannot start %s: %s\n", r, args[0].c_str(), std::strerror(errno));
      ::_exit(kFailed);
    }
    pids[static_cast<std::size_t>(r)] = pid;
  }

  std::vector<int> status(static_cast<std::size_t>(nproc), 0);
  int running = nproc, first_failed = -1, forwarded = 0;
  Clock::time_point deadline = Clock::time_point::max(), signalled = Clock::time_point::max();
  while (running > 0) {
    int st = 0;
    const pid_t pid = ::waitpid(-1, &st, WNOHANG);
    if (pid > 0) {
      for (int r = 0; r < nproc; ++r) {
        if (pids[static_cast<std::size_t>(r)] != pid) continue;
        pids[static_cast<std::size_t>(r)] = -1;
        status[static_cast<std::size_t>(r)] = st;
        --running;
        if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0) && first_failed < 0) {
          first_failed = r;
          // The others notice at their next collective; past the timeout they are stopped.
          deadline =
              Clock::now() + std::chrono::milliseconds(static_cast<std::int64_t>(timeout_seconds * 1000) + 10000);
        }
      }
      continue;
    }
    // SIGINT from a terminal reaches the ranks too (one process group); a
    // signal sent to the launcher alone is passed on after 2 s. A second one
    // would end the ranks at once, without their cleanup.
    if (const int sig = core::pending_signal(); sig != 0 && forwarded == 0) {
      if (signalled == Clock::time_point::max()) signalled = Clock::now();
      if (Clock::now() - signalled > std::chrono::seconds(2)) {
        for (pid_t p : pids) {
          if (p > 0) ::kill(p, sig);
        }
        forwarded = sig;
      }
    }
    if (Clock::now() > deadline) {
      for (int r = 0; r < nproc; ++r) {
        if (pids[static_cast<std::size_t>(r)] > 0) {
          std::fprintf(stderr, "error: rank %d did not stop within runtime.dist_timeout after rank %d failed; killed\n",
                       r, first_failed);
          ::kill(pids[static_cast<std::size_t>(r)], SIGKILL);
        }
      }
      deadline = Clock::time_point::max();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (first_failed < 0) return 0;

  std::fflush(stdout);
  nlohmann::json ranks = nlohmann::json::array();
  for (int r = 0; r < nproc; ++r) {
    ranks.push_back({{"rank", r}, {"status", describe(status[static_cast<std::size_t>(r)])}});
  }
  std::fprintf(stderr, "error: distributed run of %d ranks failed: rank %d %s first", nproc, first_failed,
               describe(status[static_cast<std::size_t>(first_failed)]).c_str());
  for (int r = 0; r < nproc; ++r) {
    if (r != first_failed)
      std::fprintf(stderr, "; rank %d %s", r, describe(status[static_cast<std::size_t>(r)]).c_str());
  }
  std::fprintf(stderr, " (logs of ranks > 0: %s/ranks/R/console.log)\n", out_dir.c_str());
  // The run folder says so, whichever rank failed (rank 0 may have written its own error).
  const fs::path failed = fs::path(out_dir) / "failed.json";
  nlohmann::json record = {{"world_size", nproc}, {"first_failed_rank", first_failed}, {"ranks", ranks}};
  try {
    if (fs::exists(failed)) {
      std::ifstream in(failed);
      record["rank0"] = nlohmann::json::parse(in);
    }
    core::atomic_write(failed, record.dump(2) + "\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "warning: %s\n", e.what());
  }
  if (const int sig = core::pending_signal(); sig != 0) return 128 + sig;
  const int st = status[static_cast<std::size_t>(first_failed)];
  return WIFEXITED(st) ? WEXITSTATUS(st) : kFailed;
}

}  // namespace ld::cli
