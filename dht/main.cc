// depot-dhtd: one node of the dedup index. See conf/dht.conf and doc/dht.md.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/base/daemon.h"
#include "common/base/logging.h"
#include "dht/dht_server.h"

int main(int argc, char** argv) {
  depot::DaemonFlags flags;
  if (!depot::ParseDaemonFlags(argc, argv, "depot-dhtd", "conf/dht.conf", &flags)) return 2;
  auto config = depot::dht::LoadDhtConfig(flags.config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "depot-dhtd: %s\n", config.status().ToString().c_str());
    return 1;
  }
  depot::Status s = depot::InitLogging(config->log_file, config->log_level);
  if (!s.ok()) {
    std::fprintf(stderr, "depot-dhtd: %s\n", s.ToString().c_str());
    return 1;
  }
  depot::dht::DhtServer server(*config);
  // Returns once the node has caught up: the ready file means "serving".
  s = server.Start();
  if (!s.ok()) {
    DEPOT_LOG_ERROR("start failed: {}", s.ToString());
    std::fprintf(stderr, "depot-dhtd: %s\n", s.ToString().c_str());
    return 1;
  }
  s = depot::WriteReadyFile(flags.ready_file,
                            {{"port", server.port()}, {"metrics_port", server.metrics_port()}});
  if (!s.ok()) {
    std::fprintf(stderr, "depot-dhtd: %s\n", s.ToString().c_str());
    return 1;
  }
  int sig = depot::WaitForTermination();
  DEPOT_LOG_INFO("signal {}: shutting down", sig);
  server.Stop();
  DEPOT_LOG_INFO("stopped");
  spdlog::shutdown();
  // The store is closed; skip the metrics exposer's slow (seconds) teardown.
  std::_Exit(0);
}
