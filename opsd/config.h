// depot-opsd configuration: one field per key of conf/opsd.conf, with its default.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/base/status.h"

namespace depot::opsd {

struct OpsdConfig {
  std::string bind_addr = "0.0.0.0";       // address the API listens on
  int port = 8090;                         // HTTP API port (0: any free port)
  int loop_threads = 2;                    // event-loop threads (parsing, fast handlers)
  int worker_threads = 8;                  // threads for slow handlers and streamed files
  std::string base_path;                   // required: the LevelDB store and the key file live here
  std::string db_path;                     // LevelDB directory (empty: base_path/db)
  std::string secret_key_file;             // AES-256-GCM key for secrets (empty: base_path/secret.key)
  bool durable_writes = true;              // sync each change to disk before acknowledging it
  std::vector<std::string> tracker_servers;  // the Depot cluster for files and run logs
  std::string upload_group;                // group for opsd's files (empty: the trackers pick)
  std::string admin_user = "admin";        // the first superuser, created at first start
  std::string admin_password;              // its password (empty: generated, written once to
                                           // base_path/initial-admin-password, mode 0600)
  int session_ttl = 8 * 3600;              // seconds a login token stays valid
  int lockout_threshold = 5;               // failed logins in a row that lock an account
  int lockout_seconds = 900;               // how long a locked account stays locked
  uint64_t max_body_size = 1 << 20;        // largest JSON (or log) request body
  uint64_t max_upload_size = 64ULL << 30;  // largest file posted to /api/v1/files
  int idle_timeout = 60;                   // seconds an idle keep-alive connection is kept
  int io_timeout = 60;                     // seconds a client may stall mid-request
  int max_connections = 4096;              // concurrent client connections
  std::string log_file;                    // empty: stderr
  std::string log_level = "info";
};

Result<OpsdConfig> LoadOpsdConfig(const std::string& path);
Result<OpsdConfig> ParseOpsdConfig(const std::string& text, const std::string& name);

}  // namespace depot::opsd
