// Bodies of Depot's internal storage<->tracker commands (kDepotStorageJoin,
// kDepotStorageHeartbeat): JSON objects, documented in doc/protocol.md. Decoding never throws
// and rejects missing or mistyped fields with InvalidArgument.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/proto/stat_records.h"

namespace depot::proto {

struct StorePathSpace {
  int64_t total_mb = 0;
  int64_t free_mb = 0;
};

// What a storage server says about itself when it joins a tracker.
struct JoinInfo {
  std::string group;
  std::string ip;  // the address clients should use (advertise_address)
  int port = 0;
  int http_port = 0;
  int store_path_count = 1;
  int subdir_count = 256;
  int upload_priority = 10;
  std::string version;
  int64_t join_time = 0;  // first join ever, kept by the storage
  int64_t up_time = 0;    // process start
};

// How far a peer has applied this storage's own changes (doc/replication.md).
struct SyncReport {
  std::string peer;          // the peer's id
  int64_t synced_until = 0;  // the peer holds every file of ours created at or before this time
  int64_t lag_records = 0;   // binlog records not yet applied by the peer
  int64_t lag_seconds = 0;   // age of the oldest of them
  bool connected = false;
};

// What it reports on every heartbeat.
struct HeartbeatInfo {
  std::string id;  // as returned by join
  std::vector<StorePathSpace> paths;
  int64_t reserved_mb = 0;
  int current_write_path = 0;
  uint32_t conn_alloc = 0, conn_current = 0, conn_max = 0;
  int64_t counters[kStorageCounterCount] = {};
  int64_t last_source_update = 0;
  // Replication: "wait_sync" (new, waiting for a peer to copy from), "syncing" (copying),
  // "active" (caught up); the binlog's last sequence number; and one report per peer.
  std::string repl_state = "active";
  int64_t binlog_seq = 0;
  std::vector<SyncReport> sync;
};

// A member of the storage's group as the tracker sees it (heartbeat reply).
struct PeerInfo {
  std::string id;
  std::string ip;
  int port = 0;
  int state = 0;
  int http_port = 0;  // where clients read over HTTP (its nginx, or storaged); 0: none
};

std::string EncodeJoin(const JoinInfo& j);
Result<JoinInfo> DecodeJoin(std::string_view body);
std::string EncodeJoinReply(const std::string& id);
Result<std::string> DecodeJoinReply(std::string_view body);
std::string EncodeHeartbeat(const HeartbeatInfo& h);
Result<HeartbeatInfo> DecodeHeartbeat(std::string_view body);
std::string EncodeHeartbeatReply(const std::vector<PeerInfo>& peers);
Result<std::vector<PeerInfo>> DecodeHeartbeatReply(std::string_view body);

}  // namespace depot::proto
