// Test plugin: a real LearnDrop plugin that calls a function no library
// defines. With RTLD_NOW the host refuses it at load time.
#include "learndrop/sdk.h"

void ld_test_function_that_nobody_defines();

namespace {
void register_plugins(ld::Registrar&) { ld_test_function_that_nobody_defines(); }
}  // namespace

LEARNDROP_PLUGIN(register_plugins)
