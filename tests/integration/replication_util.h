// Helpers of the replication tests: direct reads from one member (no tracker in between) and a
// convergence check over every member of a group.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/net/blocking_conn.h"
#include "common/proto/protocol.h"
#include "tests/harness/harness.h"

namespace depot::testing {

// What one member holds for a file ID: its bytes (nullopt: ENOENT) or an error text.
struct DirectRead {
  bool ok = false;          // the request completed (ENOENT counts as completed)
  std::optional<std::string> bytes;
  std::string error;
};

inline std::pair<std::string, std::string> SplitFileId(const std::string& file_id) {
  size_t slash = file_id.find('/');
  return {file_id.substr(0, slash), file_id.substr(slash + 1)};
}

inline std::string GroupAndName(const std::string& file_id) {
  auto [group, name] = SplitFileId(file_id);
  std::string body;
  proto::AppendFixed(&body, group, proto::kGroupNameLen);
  return body + name;
}

// Downloads a file from the member at host:port itself.
inline DirectRead DirectDownload(const std::string& host, int port, const std::string& file_id) {
  DirectRead out;
  auto conn = net::BlockingConn::Connect(host, port, 2000);
  if (!conn.ok()) {
    out.error = conn.status().ToString();
    return out;
  }
  std::string body;
  proto::AppendU64(&body, 0);
  proto::AppendU64(&body, 0);
  body += GroupAndName(file_id);
  auto r = (*conn)->Call(proto::kStorageDownload, body, 256ULL << 20);
  if (!r.ok()) {
    out.error = r.status().ToString();
    return out;
  }
  out.ok = r->status == 0 || r->status == ENOENT;
  if (r->status == 0) out.bytes = std::move(r->body);
  if (!out.ok) out.error = "status " + std::to_string(r->status);
  return out;
}

// Metadata of a file on one member ("" when it has none), nullopt on error.
inline std::optional<std::string> DirectMeta(const std::string& host, int port,
                                             const std::string& file_id) {
  auto conn = net::BlockingConn::Connect(host, port, 2000);
  if (!conn.ok()) return std::nullopt;
  auto r = (*conn)->Call(proto::kStorageGetMeta, GroupAndName(file_id), 1 << 20);
  if (!r.ok()) return std::nullopt;
  if (r->status == ENOENT) return std::string();
  if (r->status != 0) return std::nullopt;
  return r->body;
}

struct Expected {
  std::map<std::string, std::string> live;  // file ID -> bytes
  std::set<std::string> deleted;
  std::map<std::string, std::string> meta;  // file ID -> raw FastDFS metadata ("" = none)
};

// Checks every given member against `want`; returns "" when all agree, else the first mismatch.
inline std::string CheckMembers(const std::vector<Daemon*>& members, const Expected& want) {
  for (Daemon* d : members) {
    std::string who = d->host() + ":" + std::to_string(d->port());
    for (const auto& [id, bytes] : want.live) {
      auto r = DirectDownload(d->host(), d->port(), id);
      if (!r.ok) return who + ": " + id + ": " + r.error;
      if (!r.bytes) return who + " lacks " + id;
      if (*r.bytes != bytes) return who + " has different bytes for " + id;
    }
    for (const auto& id : want.deleted) {
      auto r = DirectDownload(d->host(), d->port(), id);
      if (!r.ok) return who + ": " + id + ": " + r.error;
      if (r.bytes) return who + " still has deleted " + id;
    }
    for (const auto& [id, meta] : want.meta) {
      auto m = DirectMeta(d->host(), d->port(), id);
      if (!m) return who + ": metadata of " + id + " unreadable";
      if (*m != meta) return who + " has other metadata for " + id;
    }
  }
  return "";
}

// Waits until every member agrees with `want`; returns the last mismatch on timeout ("" = ok).
inline std::string WaitConverged(const std::vector<Daemon*>& members, const Expected& want,
                                 int timeout_ms) {
  std::string why;
  WaitFor(
      [&] {
        why = CheckMembers(members, want);
        return why.empty();
      },
      timeout_ms);
  return why;
}

inline std::vector<Daemon*> GroupMembers(MiniCluster& c, int group, int n) {
  std::vector<Daemon*> out;
  for (int m = 0; m < n; ++m) out.push_back(&c.storage(group, m));
  return out;
}

}  // namespace depot::testing
