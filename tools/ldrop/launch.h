#pragma once

#include <string>

namespace ld::cli {

/// ldrop run --nproc N: starts this command N times as the ranks of one
/// data-parallel run on this machine (RANK, WORLD_SIZE, ..., a free
/// MASTER_PORT on 127.0.0.1, --out `out_dir`), waits for them, and returns
/// 0 when every rank finished. When a rank fails, the others stop at their
/// next collective; those still running `timeout_seconds` + 10 s later are
/// killed. The error names each rank and how it ended, and `out_dir`/failed.json
/// records it. Rank r > 0 prints to `out_dir`/ranks/r/console.log.
int launch_local_ranks(int nproc, const std::string& out_dir, double timeout_seconds);

}  // namespace ld::cli
