// What every Depot daemon's main() shares: flags (--config, --ready-file, --help, --version),
// the ready file that tells scripts and tests the bound ports, and waiting for SIGTERM/SIGINT.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/base/status.h"

namespace depot {

inline constexpr const char* kDepotVersion = "0.1.0";

struct DaemonFlags {
  std::string config_path;
  std::string ready_file;  // written once serving: {"pid":..,"port":..,...}
};

// Parses argv; prints help or the error and returns false when main should exit (exit code 2,
// or 0 after --help/--version, signalled through `exit_code`). Blocks SIGTERM/SIGINT/SIGHUP in
// the calling thread so that threads started later inherit the mask (WaitForTermination takes
// them with sigwait).
bool ParseDaemonFlags(int argc, char** argv, const char* name, const char* default_config,
                      DaemonFlags* flags);

// Writes `fields` (plus "pid") as a JSON object to `path` atomically. No-op for an empty path.
Status WriteReadyFile(const std::string& path, const std::vector<std::pair<std::string, int>>& fields);

// Blocks until SIGTERM or SIGINT; returns the signal number.
int WaitForTermination();

// Test-only crash points: when the environment variable DEPOT_CRASH_POINT equals `point`, the
// process ends at once with _exit(86), leaving everything as a kill -9 at that step would (no
// destructor, no flush). Tests name the step; production never sets the variable.
void CrashPoint(const char* point);

}  // namespace depot
