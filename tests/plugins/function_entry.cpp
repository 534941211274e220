// Test plugin: exports the entry symbol as a plain function instead of
// LEARNDROP_PLUGIN's pointer (issue 12, CLI finding 3: a segfault).
extern "C" __attribute__((visibility("default"))) const void* learndrop_plugin_entry() { return nullptr; }
