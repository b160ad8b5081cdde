// depot-dhtd configuration: one field per key of conf/dht.conf, with its default.
#pragma once

#include <string>
#include <vector>

#include "common/base/status.h"

namespace depot::dht {

struct DhtConfig {
  std::string bind_addr = "0.0.0.0";   // address to listen on
  int port = 11411;                    // protocol port (0: any free port)
  // host:port the other nodes and clients use to reach this node (its node id). Empty:
  // bind_addr:port. Port 0: the bound port.
  std::string advertise_address;
  std::vector<std::string> peers;      // host:port of other nodes to join (may be empty)
  int replicas = 2;                    // copies of each key (capped by the node count)
  int vnodes = 64;                     // ring points per node; the same on every node and client
  std::string data_path;               // required: the LevelDB directory
  bool durable_writes = false;         // sync every LevelDB write
  std::string cluster_secret;          // required: shared secret of internal commands
  std::vector<std::string> allow_hosts;  // the handshake only from these (empty: any)
  int max_connections = 1024;          // concurrent connections
  int threads = 2;                     // network loop threads (workers: 4 per loop thread)
  int network_timeout = 30;            // seconds a peer may stall mid-frame; also peer call deadline
  // Seconds between two anti-entropy rounds (a pull of this node's share from every other member,
  // doc/dht.md). 0: off (catch-up at start-up and pulls from newly learnt members only).
  int anti_entropy_interval = 30;
  int idle_timeout = 900;              // seconds an idle connection is kept
  int metrics_port = 11480;            // Prometheus /metrics port (0: any, -1: off)
  std::string log_file;                // empty: stderr
  std::string log_level = "info";      // trace, debug, info, warn, error
};

// Parses a dht.conf. InvalidArgument naming the key on any unknown key or bad value.
Result<DhtConfig> LoadDhtConfig(const std::string& path);
Result<DhtConfig> ParseDhtConfig(const std::string& text, const std::string& name);

}  // namespace depot::dht
