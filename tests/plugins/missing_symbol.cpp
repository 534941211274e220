// Test plugin: a shared library that exports no LearnDrop entry.
extern "C" __attribute__((visibility("default"))) int not_a_learndrop_plugin() { return 42; }
