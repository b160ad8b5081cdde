// RunDaemon: the whole main() of a Depot daemon, shared by depot-trackerd, depot-storaged,
// depot-dhtd and depot-opsd: flags, the config, logging, Start(), the ready file, waiting for
// SIGTERM/SIGINT, Stop(). Exit codes: 2 for bad flags, 1 when anything fails, 0 after a signal.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "common/base/daemon.h"
#include "common/base/logging.h"

namespace depot {

// `Config` has log_file and log_level; `Server` is built from a Config and has Start()/Stop().
// `ready` lists the ports written to the ready file; `started` (optional) runs after Start().
template <typename Server, typename Config>
int RunDaemon(int argc, char** argv, const char* name, const char* default_config,
              Result<Config> (*load)(const std::string&),
              const std::function<std::vector<std::pair<std::string, int>>(Server&)>& ready,
              const std::function<void(Server&, const Config&)>& started = nullptr) {
  DaemonFlags flags;
  if (!ParseDaemonFlags(argc, argv, name, default_config, &flags)) return 2;
  auto fail = [name](const Status& s) {
    std::fprintf(stderr, "%s: %s\n", name, s.ToString().c_str());
    return 1;
  };
  auto config = load(flags.config_path);
  if (!config.ok()) return fail(config.status());
  Status s = InitLogging(config->log_file, config->log_level);
  if (!s.ok()) return fail(s);
  Server server(*config);
  s = server.Start();
  if (!s.ok()) {
    DEPOT_LOG_ERROR("start failed: {}", s.ToString());
    return fail(s);
  }
  if (started) started(server, *config);
  s = WriteReadyFile(flags.ready_file, ready(server));
  if (!s.ok()) return fail(s);
  int sig = WaitForTermination();
  DEPOT_LOG_INFO("signal {}: shutting down", sig);
  server.Stop();
  DEPOT_LOG_INFO("stopped");
  spdlog::shutdown();
  // Everything that holds data is closed; skip the metrics exposer's slow (seconds) teardown.
  std::_Exit(0);
}

}  // namespace depot
