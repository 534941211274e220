// Test plugin: exports the entry symbol as a null pointer (issue 12, CLI finding 3: a segfault).
extern "C" __attribute__((visibility("default"))) const void* learndrop_plugin_entry = nullptr;
