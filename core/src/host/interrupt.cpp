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
std::atomic<int> g_deferred{0};

extern "C" void on_signal(int sig) {
  if (g_signal != 0) _exit(128 + sig);  // a second signal: stop now
  g_signal = sig;
}

}  // namespace

Interrupted::Interrupted(int signal, std::string checkpoint)
    : Error(std::string("interrupted by ") + (signal == SIGINT    ? "SIGINT"
                                              : signal == SIGTERM ? "SIGTERM"
                                              : signal == SIGHUP  ? "SIGHUP"
                                                                  : "a signal")),
      signal_(signal),
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
  if (g_signal != 0 && g_deferred.load() == 0) throw Interrupted(g_signal);
}

}  // namespace ld::core
