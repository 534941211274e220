#include "learndrop/core/interrupt.h"

#include <atomic>
#include <csignal>
#include <cstring>
#include <string>
#include <utility>

#include <unistd.h>

namespace ld::core {

namespace {

volatile std::sig_atomic_t g_signal = 0;
volatile std::sig_atomic_t g_count = 0;
std::atomic<int> g_deferred{0};

// Only async-signal-safe calls here: write(2) and _exit(2).
void say(const char* text) {
  const ssize_t ignored = ::write(STDERR_FILENO, text, std::strlen(text));
  (void)ignored;
}

extern "C" void on_signal(int sig) {
  if (g_signal == 0) {
    g_signal = sig;
    return;
  }
  if (g_count < 2) {
    // A second signal: the deferred work (a cache build, an evaluation)
    // stops at its next batch and unwinds, removing its temporary files.
    g_count = 2;
    say("\nsecond signal: stopping at the next batch without a new checkpoint (a third ends the process at once)\n");
    return;
  }
  say("\nthird signal: ending the process now; temporary files may remain\n");
  _exit(128 + sig);
}

}  // namespace

Interrupted::Interrupted(int signal, std::string checkpoint, bool twice)
    : Error(std::string("interrupted by ") +
            (signal == SIGINT    ? "SIGINT"
             : signal == SIGTERM ? "SIGTERM"
             : signal == SIGHUP  ? "SIGHUP"
                                 : "a signal") +
            (twice ? " twice" : "")),
      signal_(signal),
      twice_(twice),
      checkpoint_(std::move(checkpoint)) {}

DeferInterrupts::DeferInterrupts(bool on) : on_(on) {
  if (on_) ++g_deferred;
}

DeferInterrupts::~DeferInterrupts() {
  if (on_) --g_deferred;
}

void install_interrupt_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  // A closed terminal or ssh session: stop like Ctrl-C, so that the disk
  // cache file is removed and the run folder says what happened.
  sigaction(SIGHUP, &sa, nullptr);
  std::signal(SIGXFSZ, SIG_IGN);
}

int pending_signal() { return g_signal; }

void throw_if_interrupted() {
  if (g_signal == 0) return;
  if (g_count >= 2) throw Interrupted(g_signal, "", true);
  if (g_deferred.load() == 0) throw Interrupted(g_signal);
}

}  // namespace ld::core
