#pragma once

#include <string>

#include "learndrop/error.h"

namespace ld::core {

/// Thrown at the next check after SIGINT or SIGTERM; unwinding removes
/// temporary files (caches, partial results) through their owners.
class Interrupted : public Error {
 public:
  /// `checkpoint`: the checkpoint written and how to resume ("" = none).
  /// `twice`: a second signal stopped deferred work (no new checkpoint).
  explicit Interrupted(int signal, std::string checkpoint = "", bool twice = false);
  int signal() const { return signal_; }
  const std::string& checkpoint() const { return checkpoint_; }
  bool twice() const { return twice_; }

 private:
  int signal_;
  bool twice_;
  std::string checkpoint_;
};

/// While one exists, throw_if_interrupted does not throw (pending_signal
/// still says a signal came): a run that writes checkpoints lets a cache
/// build or an evaluation finish and stops at the next training step with a
/// checkpoint. `on` = false defers nothing.
class DeferInterrupts {
 public:
  explicit DeferInterrupts(bool on);
  ~DeferInterrupts();
  DeferInterrupts(const DeferInterrupts&) = delete;
  DeferInterrupts& operator=(const DeferInterrupts&) = delete;

 private:
  bool on_;
};

/// SIGINT, SIGTERM and SIGHUP set a flag that throw_if_interrupted turns
/// into Interrupted. A second signal stops deferred work too (a cache build
/// stops at its next batch and unwinds, removing its partial file; no new
/// checkpoint is written, the last one stays); a third ends the process at
/// once.
/// SIGXFSZ is ignored, so that a file size limit is a write error (EFBIG)
/// the caches report instead of a crash.
void install_interrupt_handlers();

/// The signal received (0 if none).
int pending_signal();

/// Throws Interrupted when a signal arrived and nothing defers it, or when a
/// second one arrived. Called between training steps, cache-build batches
/// and evaluation batches.
void throw_if_interrupted();

}  // namespace ld::core
