// depot-trackerd configuration: one field per key of conf/tracker.conf, with its default.
#pragma once

#include <string>
#include <vector>

#include "common/base/status.h"

namespace depot::tracker {

struct TrackerConfig {
  std::string bind_addr = "0.0.0.0";      // address to listen on
  int port = 22122;                       // client and storage protocol port (0: any free port)
  int metrics_port = 22180;               // Prometheus /metrics port (0: any, -1: off)
  std::string base_path;                  // required: state (LevelDB) lives in base_path/data
  std::string log_file;                   // empty: stderr
  std::string log_level = "info";         // trace, debug, info, warn, error
  int work_threads = 2;                   // network loop threads
  int max_connections = 1024;             // concurrent connections
  int idle_timeout = 900;                 // seconds an idle connection is kept
  int network_timeout = 30;               // seconds a peer may stall mid-frame
  std::string store_lookup = "round_robin";  // which group takes an upload: round_robin, specified, most_free
  std::string store_group;                // the group for store_lookup = specified
  std::string store_server = "round_robin";  // which member: round_robin, most_free, first_by_priority
  std::string store_path = "round_robin";    // which store path: round_robin, most_free
  int storage_timeout = 30;               // seconds without heartbeat before a storage is OFFLINE
  std::vector<std::string> allow_hosts;    // internal commands only from these (empty: any)
  std::string cluster_secret;             // required: shared secret of internal commands
};

// Parses a tracker.conf. InvalidArgument naming the key on any unknown key or bad value.
Result<TrackerConfig> LoadTrackerConfig(const std::string& path);
Result<TrackerConfig> ParseTrackerConfig(const std::string& text, const std::string& name);

}  // namespace depot::tracker
