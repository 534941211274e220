// The process's memory allocator settings, linked into every LearnDrop
// executable (ldrop, the tests), never into the libraries.
//
// Why: training allocates and frees the same large activation tensors at
// every step. glibc's malloc hands allocations above its mmap threshold back
// to the kernel when they are freed, and trims the heap's top, so the next
// step touches fresh pages: one page fault per 4 KiB. On the virtual machines
// this project runs on, freed guest pages are reported to the host and each
// fault is expensive: a ResNet-18 (width 0.25, CIFAR stem) trained at 367
// images/s with glibc's malloc and at about 1,270 with a caching allocator, and a
// cache build's forward pass ran at 40-60 GFLOP/s instead of 120-300
// (docs/results.md#builds-at-training-speed). PyTorch's CPU tuning guides
// give the same advice (jemalloc or tcmalloc).
//
// jemalloc reads `malloc_conf` when it starts, before main:
// - oversize_threshold:0  no separate arena for large allocations (that arena
//   returns its pages to the kernel at once, the behaviour above);
// - dirty_decay_ms / muzzy_decay_ms: -1  freed pages are kept for reuse
//   instead of being purged; a training process reuses them at every step,
//   and its peak is what it needs anyway;
// - thp:always  large extents are backed by 2 MiB pages where the kernel
//   allows it (transparent_hugepage: madvise): the first touch of a fresh
//   feature cache faults 512 times less often (a 625 MiB cache was written in
//   2.6 s with 4 KiB pages, 1.6 s with 2 MiB pages, on this project's VMs).
// MALLOC_CONF in the environment still overrides these.

#if defined(LEARNDROP_WITH_JEMALLOC)
extern "C" {
// NOLINTNEXTLINE: the name and type are jemalloc's documented interface.
__attribute__((visibility("default"))) const char* malloc_conf =
    "oversize_threshold:0,dirty_decay_ms:-1,muzzy_decay_ms:-1,thp:always";
}
#endif
