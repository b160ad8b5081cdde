// FastDFS monitor commands: list one group (90), all groups (91), storages of a group (92); and
// Depot's cluster status (240): the same and the replication state, as JSON (doc/protocol.md).
#include <nlohmann/json.hpp>

#include "common/base/hash.h"
#include "common/proto/file_id.h"
#include "tracker/tracker_server.h"

namespace depot::tracker {
namespace {

using net::ConnectionPtr;
using proto::FrameHeader;

void ListGroups(TrackerServer* t, const ConnectionPtr& c, const FrameHeader& h, std::string body) {
  std::string out;
  if (h.cmd == proto::kTrackerListOneGroup) {
    if (body.size() != proto::kGroupNameLen) return c->Reply(EINVAL);
    std::string group(proto::TrimFixed(body));
    auto g = t->cluster().GroupStat(group);
    if (!g.ok()) return c->ReplyStatus(g.status());
    proto::AppendGroupStat(&out, *g);
  } else {
    if (!body.empty()) return c->Reply(EINVAL);
    for (const auto& g : t->cluster().AllGroupStats()) proto::AppendGroupStat(&out, g);
  }
  c->Reply(0, out);
}

void ListStorages(TrackerServer* t, const ConnectionPtr& c, const FrameHeader&, std::string body) {
  if (body.size() < proto::kGroupNameLen) return c->Reply(EINVAL);
  std::string group(proto::TrimFixed(std::string_view(body).substr(0, proto::kGroupNameLen)));
  std::string only(proto::TrimFixed(std::string_view(body).substr(proto::kGroupNameLen)));
  auto stats = t->cluster().StorageStats(group, only);
  if (!stats.ok()) return c->ReplyStatus(stats.status());
  std::string out;
  for (const auto& s : *stats) proto::AppendStorageStat(&out, s);
  c->Reply(0, out);
}

void ClusterStatus(TrackerServer* t, const ConnectionPtr& c, std::string body) {
  if (!body.empty()) return c->Reply(EINVAL);
  using nlohmann::json;
  json groups = json::array();
  for (const auto& g : t->cluster().AllGroupStats()) {
    json members = json::array();
    for (const auto& m : t->cluster().Members(g.group_name)) {
      json sync = json::array();
      for (const auto& r : m.hb.sync) {
        sync.push_back({{"peer", r.peer},
                        {"synced_until", r.synced_until},
                        {"lag_records", r.lag_records},
                        {"lag_seconds", r.lag_seconds},
                        {"connected", r.connected}});
      }
      members.push_back({{"id", m.id},
                         {"ip", m.info.ip},
                         {"port", m.info.port},
                         {"http_port", m.info.http_port},
                         {"state", static_cast<int>(m.state)},
                         {"state_name", proto::StorageStateName(m.state)},
                         {"store_path_count", m.info.store_path_count},
                         {"total_mb", m.TotalMb()},
                         {"free_mb", m.FreeMb()},
                         {"reserved_mb", m.hb.reserved_mb},
                         {"uploads", m.hb.counters[proto::kCntUpload + 1]},
                         {"downloads", m.hb.counters[proto::kCntDownload + 1]},
                         {"last_heartbeat", m.last_heartbeat},
                         {"version", m.info.version},
                         {"repl_state", m.hb.repl_state},
                         {"binlog_seq", m.hb.binlog_seq},
                         {"sync", sync}});
    }
    groups.push_back({{"name", g.group_name},
                      {"total_mb", g.total_mb},
                      {"free_mb", g.free_mb},
                      {"writable", g.writable_count},
                      {"readable", g.readable_count},
                      {"members", members}});
  }
  c->Reply(0, json{{"time", UnixSeconds()}, {"groups", groups}}.dump());
}

}  // namespace

void RegisterMonitor(TrackerServer* t, net::FrameServer* s) {
  net::CommandSpec groups;
  groups.max_body = proto::kGroupNameLen;
  groups.handle = [t](const ConnectionPtr& c, const FrameHeader& h, std::string body) {
    ListGroups(t, c, h, std::move(body));
  };
  s->Register(proto::kTrackerListOneGroup, groups);
  s->Register(proto::kTrackerListGroups, groups);
  net::CommandSpec storages;
  storages.max_body = proto::kGroupNameLen + 64;
  storages.handle = [t](const ConnectionPtr& c, const FrameHeader& h, std::string body) {
    ListStorages(t, c, h, std::move(body));
  };
  s->Register(proto::kTrackerListStorages, storages);
  net::CommandSpec status;
  status.max_body = 0;
  status.handle = [t](const ConnectionPtr& c, const FrameHeader&, std::string body) {
    ClusterStatus(t, c, std::move(body));
  };
  s->Register(proto::kDepotClusterStatus, status);
}

}  // namespace depot::tracker
