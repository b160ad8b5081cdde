#include "common/proto/internal.h"

#include <nlohmann/json.hpp>

namespace depot::proto {
namespace {

using nlohmann::json;

Result<json> ParseObject(std::string_view body, const char* what) {
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Status::InvalidArgument(std::string(what) + ": body is not a JSON object");
  }
  return j;
}

template <typename T>
Status Get(const json& j, const char* key, T* out, const char* what) {
  auto it = j.find(key);
  if (it == j.end()) return Status::InvalidArgument(std::string(what) + ": missing field", key);
  if constexpr (std::is_same_v<T, std::string>) {
    if (!it->is_string()) return Status::InvalidArgument(std::string(what) + ": not a string:", key);
    *out = it->template get<std::string>();
  } else {
    if (!it->is_number_integer()) {
      return Status::InvalidArgument(std::string(what) + ": not an integer:", key);
    }
    *out = it->template get<T>();
  }
  return Status::OK();
}

}  // namespace

std::string EncodeJoin(const JoinInfo& x) {
  json j = {{"group", x.group},
            {"ip", x.ip},
            {"port", x.port},
            {"http_port", x.http_port},
            {"store_path_count", x.store_path_count},
            {"subdir_count", x.subdir_count},
            {"upload_priority", x.upload_priority},
            {"version", x.version},
            {"join_time", x.join_time},
            {"up_time", x.up_time}};
  return j.dump();
}

Result<JoinInfo> DecodeJoin(std::string_view body) {
  DEPOT_ASSIGN_OR_RETURN(json j, ParseObject(body, "join"));
  JoinInfo x;
  DEPOT_RETURN_IF_ERROR(Get(j, "group", &x.group, "join"));
  DEPOT_RETURN_IF_ERROR(Get(j, "ip", &x.ip, "join"));
  DEPOT_RETURN_IF_ERROR(Get(j, "port", &x.port, "join"));
  DEPOT_RETURN_IF_ERROR(Get(j, "http_port", &x.http_port, "join"));
  DEPOT_RETURN_IF_ERROR(Get(j, "store_path_count", &x.store_path_count, "join"));
  DEPOT_RETURN_IF_ERROR(Get(j, "subdir_count", &x.subdir_count, "join"));
  DEPOT_RETURN_IF_ERROR(Get(j, "upload_priority", &x.upload_priority, "join"));
  DEPOT_RETURN_IF_ERROR(Get(j, "version", &x.version, "join"));
  DEPOT_RETURN_IF_ERROR(Get(j, "join_time", &x.join_time, "join"));
  DEPOT_RETURN_IF_ERROR(Get(j, "up_time", &x.up_time, "join"));
  return x;
}

std::string EncodeJoinReply(const std::string& id) { return json{{"id", id}}.dump(); }

Result<std::string> DecodeJoinReply(std::string_view body) {
  DEPOT_ASSIGN_OR_RETURN(json j, ParseObject(body, "join reply"));
  std::string id;
  DEPOT_RETURN_IF_ERROR(Get(j, "id", &id, "join reply"));
  return id;
}

std::string EncodeHeartbeat(const HeartbeatInfo& h) {
  json paths = json::array();
  for (const auto& p : h.paths) paths.push_back({{"total_mb", p.total_mb}, {"free_mb", p.free_mb}});
  json j = {{"id", h.id},
            {"paths", paths},
            {"reserved_mb", h.reserved_mb},
            {"current_write_path", h.current_write_path},
            {"conn", {h.conn_alloc, h.conn_current, h.conn_max}},
            {"counters", std::vector<int64_t>(std::begin(h.counters), std::end(h.counters))},
            {"last_source_update", h.last_source_update},
            {"repl_state", h.repl_state},
            {"binlog_seq", h.binlog_seq}};
  json sync = json::array();
  for (const auto& r : h.sync) {
    sync.push_back({{"peer", r.peer},
                    {"synced_until", r.synced_until},
                    {"lag_records", r.lag_records},
                    {"lag_seconds", r.lag_seconds},
                    {"connected", r.connected}});
  }
  j["sync"] = sync;
  return j.dump();
}

Result<HeartbeatInfo> DecodeHeartbeat(std::string_view body) {
  DEPOT_ASSIGN_OR_RETURN(json j, ParseObject(body, "heartbeat"));
  HeartbeatInfo h;
  DEPOT_RETURN_IF_ERROR(Get(j, "id", &h.id, "heartbeat"));
  DEPOT_RETURN_IF_ERROR(Get(j, "reserved_mb", &h.reserved_mb, "heartbeat"));
  DEPOT_RETURN_IF_ERROR(Get(j, "current_write_path", &h.current_write_path, "heartbeat"));
  DEPOT_RETURN_IF_ERROR(Get(j, "last_source_update", &h.last_source_update, "heartbeat"));
  auto paths = j.find("paths");
  if (paths == j.end() || !paths->is_array() || paths->size() > 256) {
    return Status::InvalidArgument("heartbeat: paths must be an array of at most 256");
  }
  for (const auto& p : *paths) {
    if (!p.is_object()) return Status::InvalidArgument("heartbeat: bad path entry");
    StorePathSpace s;
    DEPOT_RETURN_IF_ERROR(Get(p, "total_mb", &s.total_mb, "heartbeat path"));
    DEPOT_RETURN_IF_ERROR(Get(p, "free_mb", &s.free_mb, "heartbeat path"));
    h.paths.push_back(s);
  }
  auto conn = j.find("conn");
  if (conn != j.end() && conn->is_array() && conn->size() == 3 && (*conn)[0].is_number_unsigned() &&
      (*conn)[1].is_number_unsigned() && (*conn)[2].is_number_unsigned()) {
    h.conn_alloc = (*conn)[0].get<uint32_t>();
    h.conn_current = (*conn)[1].get<uint32_t>();
    h.conn_max = (*conn)[2].get<uint32_t>();
  }
  auto counters = j.find("counters");
  if (counters != j.end() && counters->is_array() &&
      counters->size() == static_cast<size_t>(kStorageCounterCount)) {
    for (int i = 0; i < kStorageCounterCount; ++i) {
      if (!(*counters)[i].is_number_integer()) {
        return Status::InvalidArgument("heartbeat: counters must be integers");
      }
      h.counters[i] = (*counters)[i].get<int64_t>();
    }
  }
  // Replication fields (optional: absent from a storage without replication).
  if (auto it = j.find("repl_state"); it != j.end()) {
    if (!it->is_string()) return Status::InvalidArgument("heartbeat: repl_state must be a string");
    h.repl_state = it->get<std::string>();
    if (h.repl_state != "wait_sync" && h.repl_state != "syncing" && h.repl_state != "active") {
      return Status::InvalidArgument("heartbeat: unknown repl_state", h.repl_state);
    }
  }
  if (j.contains("binlog_seq")) {
    DEPOT_RETURN_IF_ERROR(Get(j, "binlog_seq", &h.binlog_seq, "heartbeat"));
  }
  if (auto it = j.find("sync"); it != j.end()) {
    if (!it->is_array() || it->size() > 1024) {
      return Status::InvalidArgument("heartbeat: sync must be an array of at most 1024");
    }
    for (const auto& r : *it) {
      if (!r.is_object()) return Status::InvalidArgument("heartbeat: bad sync entry");
      SyncReport x;
      DEPOT_RETURN_IF_ERROR(Get(r, "peer", &x.peer, "heartbeat sync"));
      DEPOT_RETURN_IF_ERROR(Get(r, "synced_until", &x.synced_until, "heartbeat sync"));
      DEPOT_RETURN_IF_ERROR(Get(r, "lag_records", &x.lag_records, "heartbeat sync"));
      DEPOT_RETURN_IF_ERROR(Get(r, "lag_seconds", &x.lag_seconds, "heartbeat sync"));
      auto c = r.find("connected");
      x.connected = c != r.end() && c->is_boolean() && c->get<bool>();
      if (x.peer.size() > 64) return Status::InvalidArgument("heartbeat: peer id too long");
      h.sync.push_back(std::move(x));
    }
  }
  return h;
}

std::string EncodeHeartbeatReply(const std::vector<PeerInfo>& peers) {
  json arr = json::array();
  for (const auto& p : peers) {
    arr.push_back({{"id", p.id},
                   {"ip", p.ip},
                   {"port", p.port},
                   {"state", p.state},
                   {"http_port", p.http_port}});
  }
  return json{{"peers", arr}}.dump();
}

Result<std::vector<PeerInfo>> DecodeHeartbeatReply(std::string_view body) {
  DEPOT_ASSIGN_OR_RETURN(json j, ParseObject(body, "heartbeat reply"));
  auto peers = j.find("peers");
  if (peers == j.end() || !peers->is_array()) {
    return Status::InvalidArgument("heartbeat reply: peers must be an array");
  }
  std::vector<PeerInfo> out;
  for (const auto& p : *peers) {
    if (!p.is_object()) return Status::InvalidArgument("heartbeat reply: bad peer");
    PeerInfo x;
    DEPOT_RETURN_IF_ERROR(Get(p, "id", &x.id, "peer"));
    DEPOT_RETURN_IF_ERROR(Get(p, "ip", &x.ip, "peer"));
    DEPOT_RETURN_IF_ERROR(Get(p, "port", &x.port, "peer"));
    DEPOT_RETURN_IF_ERROR(Get(p, "state", &x.state, "peer"));
    if (p.contains("http_port")) DEPOT_RETURN_IF_ERROR(Get(p, "http_port", &x.http_port, "peer"));
    out.push_back(x);
  }
  return out;
}

}  // namespace depot::proto
