// TrackerServer: owns the tracker's frame server, cluster map, state store and metrics.
// Start() binds and serves; Stop() (any thread) ends it. Handlers live in tracker/handlers/.
#pragma once

#include <memory>

#include "common/metrics/metrics.h"
#include "common/net/frame_server.h"
#include "tracker/cluster_map.h"
#include "tracker/config.h"
#include "tracker/state_store.h"

namespace depot::tracker {

class TrackerServer {
 public:
  explicit TrackerServer(TrackerConfig config);
  ~TrackerServer();

  Status Start();
  void Stop();
  int port() const { return server_ ? server_->port() : 0; }
  int metrics_port() const { return metrics_ ? metrics_->port() : 0; }

  ClusterMap& cluster() { return *cluster_; }
  // Persists a member's join info off the network loops (a synced LevelDB write).
  void PersistMember(const proto::JoinInfo& info);
  const TrackerConfig& config() const { return config_; }

 private:
  TrackerConfig config_;
  std::unique_ptr<ClusterMap> cluster_;
  std::unique_ptr<StateStore> store_;
  std::unique_ptr<metrics::MetricsServer> metrics_;
  std::unique_ptr<metrics::RpcMetrics> rpc_metrics_;
  std::unique_ptr<net::EventLoop> timer_loop_;
  std::unique_ptr<net::FrameServer> server_;
};

// Handler families (tracker/handlers/*.cc).
void RegisterClientQueries(TrackerServer* t, net::FrameServer* s);
void RegisterMonitor(TrackerServer* t, net::FrameServer* s);
void RegisterStorageChannel(TrackerServer* t, net::FrameServer* s);

}  // namespace depot::tracker
