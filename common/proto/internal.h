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

// What it reports on every heartbeat.
struct HeartbeatInfo {
  std::string id;  // as returned by join
  std::vector<StorePathSpace> paths;
  int64_t reserved_mb = 0;
  int current_write_path = 0;
  uint32_t conn_alloc = 0, conn_current = 0, conn_max = 0;
  int64_t counters[kStorageCounterCount] = {};
  int64_t last_source_update = 0;
};

// A member of the storage's group as the tracker sees it (heartbeat reply).
struct PeerInfo {
  std::string id;
  std::string ip;
  int port = 0;
  int state = 0;
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
