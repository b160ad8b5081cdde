// FastDFS monitor commands: list one group (90), all groups (91), storages of a group (92).
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
}

}  // namespace depot::tracker
