#pragma once

#include "learndrop/error.h"

namespace ld::core {

/// Thrown at the next check after SIGINT or SIGTERM; unwinding removes
/// temporary files (caches, partial results) through their owners.
class Interrupted : public Error {
 public:
  explicit Interrupted(int signal);
  int signal() const { return signal_; }

 private:
  int signal_;
};

/// SIGINT and SIGTERM set a flag that throw_if_interrupted turns into
/// Interrupted; a second signal of either kind ends the process at once.
/// SIGXFSZ is ignored, so that a file size limit is a write error (EFBIG)
/// the caches report instead of a crash.
void install_interrupt_handlers();

/// The signal received (0 if none).
int pending_signal();

/// Throws Interrupted when a signal arrived. Called between training steps,
/// cache-build batches and evaluation batches.
void throw_if_interrupted();

}  // namespace ld::core
