// depot-storaged: stores one group's files. See conf/storage.conf and doc/storage-layout.md.
#include <cstdio>
#include <cstdlib>

#include "common/base/daemon.h"
#include "common/base/logging.h"
#include "storage/storage_server.h"

int main(int argc, char** argv) {
  depot::DaemonFlags flags;
  if (!depot::ParseDaemonFlags(argc, argv, "depot-storaged", "conf/storage.conf", &flags)) return 2;
  auto config = depot::storage::LoadStorageConfig(flags.config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "depot-storaged: %s\n", config.status().ToString().c_str());
    return 1;
  }
  depot::Status s = depot::InitLogging(config->log_file, config->log_level);
  if (!s.ok()) {
    std::fprintf(stderr, "depot-storaged: %s\n", s.ToString().c_str());
    return 1;
  }
  depot::storage::StorageServer server(*config);
  s = server.Start();
  if (!s.ok()) {
    DEPOT_LOG_ERROR("start failed: {}", s.ToString());
    std::fprintf(stderr, "depot-storaged: %s\n", s.ToString().c_str());
    return 1;
  }
  s = depot::WriteReadyFile(flags.ready_file,
                            {{"port", server.port()}, {"metrics_port", server.metrics_port()},
                             {"http_port", server.http_port()}});
  if (!s.ok()) {
    std::fprintf(stderr, "depot-storaged: %s\n", s.ToString().c_str());
    return 1;
  }
  int sig = depot::WaitForTermination();
  DEPOT_LOG_INFO("signal {}: shutting down", sig);
  server.Stop();
  DEPOT_LOG_INFO("stopped");
  spdlog::shutdown();
  // Everything that holds data is closed; skip the metrics exposer's slow (seconds) teardown.
  std::_Exit(0);
}
