// depot-storaged configuration: one field per key of conf/storage.conf, with its default.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/base/status.h"

namespace depot::storage {

struct StorageConfig {
  std::string group_name;                  // required: the group this server belongs to
  std::string bind_addr = "0.0.0.0";       // address to listen on
  int port = 23000;                        // client protocol port (0: any free port)
  std::string advertise_address;           // IPv4 clients should use; empty: as trackers see us
  int http_port = 8888;                    // HTTP reads (0: any free port, -1: off)
  int http_threads = 2;                    // HTTP loop threads
  bool http_token = false;                 // anti-leech token required on HTTP reads
  std::string http_secret;                 // its secret (FastDFS's http.secret_key)
  int http_token_ttl = 900;                // seconds a token stays valid
  std::string http_mime_types;             // mime.types file (empty: a small built-in table)
  int http_cache_max_age = 31536000;       // Cache-Control max-age of file responses
  std::string http_miss = "redirect";      // a file not (yet) here: redirect | proxy | off
  int http_advertise_port = 0;             // HTTP port other members send clients to (0: http_port)
  int metrics_port = 23080;                // Prometheus /metrics port (0: any, -1: off)
  std::string base_path;                   // required: logs, LevelDB state
  std::vector<std::string> store_paths;    // store_path0..N; default: base_path
  std::vector<std::string> tracker_servers;  // tracker_server = host:port, one line each
  int heartbeat_interval = 10;             // seconds between heartbeats to each tracker
  bool durable_writes = false;             // fsync data and directory before acknowledging
  std::string reserved_space = "1G";       // free space kept per store path: bytes or N%
  uint64_t max_file_size = 64ULL << 30;    // largest upload accepted
  int work_threads = 2;                    // network loop threads
  int disk_writer_threads = 2;             // writer threads per store path
  int disk_reader_threads = 2;             // reader threads per store path
  int max_connections = 1024;              // concurrent client connections
  int idle_timeout = 900;                  // seconds an idle connection is kept
  int network_timeout = 30;                // seconds a peer may stall mid-frame
  int upload_priority = 10;                // lower wins with store_server = first_by_priority
  std::string log_file;                    // empty: stderr
  std::string log_level = "info";
  std::vector<std::string> allow_hosts;    // internal commands only from these (empty: any)
  std::string cluster_secret;              // required: shared secret of internal commands
  // Replication (doc/replication.md).
  std::string replication = "async";       // async | sync
  int write_quorum = 2;                    // with sync: members (source included) that must hold
                                           // an upload before it is acknowledged
  int sync_window = 32;                    // records in flight per peer
  int sync_delay_ms = 0;                   // testing: delay before pushing each record
  // Trunk storage (doc/trunk.md): files up to slot_max_size packed into trunk files.
  bool use_trunk_file = false;
  uint64_t slot_min_size = 256;            // smallest slot (header included)
  uint64_t slot_max_size = 1ULL << 20;     // largest file stored in a trunk
  uint64_t trunk_file_size = 64ULL << 20;  // size of each trunk file
  // Dedup (doc/dedup.md): identical content stored once per member, indexed in the dht.
  bool dedup = false;                      // on: look every upload up in the dht
  std::vector<std::string> dht_servers;    // dht nodes, host:port (comma-separated or repeated)
  int dht_replicas = 2;                    // replicas per key (as the dht nodes' `replicas`)
  int dht_timeout_ms = 1000;               // connect and I/O deadline of each dht call
  uint64_t dedup_min_size = 1;             // smaller uploads are never deduplicated
  int dedup_threads = 4;                   // threads for the upload steps that wait on the dht
};

Result<StorageConfig> LoadStorageConfig(const std::string& path);
Result<StorageConfig> ParseStorageConfig(const std::string& text, const std::string& name);

// Reserved space for a store path of `total_bytes`: "N%" of it or a byte size.
Result<uint64_t> ReservedBytes(const std::string& spec, uint64_t total_bytes);

}  // namespace depot::storage
