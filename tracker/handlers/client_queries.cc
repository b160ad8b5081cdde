// FastDFS client queries: where to store (101, 104, 106, 107), where to fetch (102, 105) and
// where to update (103). Layouts in doc/protocol.md.
#include <optional>

#include "common/base/hash.h"
#include "common/proto/file_id.h"
#include "tracker/tracker_server.h"

namespace depot::tracker {
namespace {

using net::ConnectionPtr;
using proto::FrameHeader;

void AppendTarget(std::string* out, const Target& t) {
  proto::AppendFixed(out, t.ip, proto::kQueryIpLen);
  proto::AppendU64(out, static_cast<uint64_t>(t.port));
}

std::optional<std::string> GroupFromBody(const std::string& body) {
  return std::string(proto::TrimFixed(std::string_view(body).substr(0, proto::kGroupNameLen)));
}

void QueryStore(TrackerServer* t, const ConnectionPtr& c, const FrameHeader& h, std::string body) {
  bool with_group = h.cmd == proto::kTrackerQueryStoreWithGroupOne ||
                    h.cmd == proto::kTrackerQueryStoreWithGroupAll;
  bool all = h.cmd == proto::kTrackerQueryStoreNoGroupAll ||
             h.cmd == proto::kTrackerQueryStoreWithGroupAll;
  std::optional<std::string> group;
  if (with_group) {
    if (body.size() != proto::kGroupNameLen) return c->Reply(EINVAL);
    group = GroupFromBody(body);
    if (!proto::ValidateGroupName(*group).ok()) return c->Reply(EINVAL);
  } else if (!body.empty()) {
    return c->Reply(EINVAL);
  }
  std::string out;
  if (all) {
    auto targets = t->cluster().PickStoreAll(group);
    if (!targets.ok()) return c->ReplyStatus(targets.status());
    proto::AppendFixed(&out, targets->front().group, proto::kGroupNameLen);
    for (const auto& tg : *targets) AppendTarget(&out, tg);
    out.push_back(static_cast<char>(targets->front().store_path));
  } else {
    auto tg = t->cluster().PickStore(group);
    if (!tg.ok()) return c->ReplyStatus(tg.status());
    proto::AppendFixed(&out, tg->group, proto::kGroupNameLen);
    AppendTarget(&out, *tg);
    out.push_back(static_cast<char>(tg->store_path));
  }
  c->Reply(0, out);
}

void QueryFetch(TrackerServer* t, const ConnectionPtr& c, const FrameHeader& h, std::string body) {
  if (body.size() <= proto::kGroupNameLen) return c->Reply(EINVAL);
  std::string group(proto::TrimFixed(std::string_view(body).substr(0, proto::kGroupNameLen)));
  auto id = proto::ParseRemoteName(group, std::string_view(body).substr(proto::kGroupNameLen));
  if (!id.ok()) return c->Reply(EINVAL);
  std::string out;
  proto::AppendFixed(&out, group, proto::kGroupNameLen);
  if (h.cmd == proto::kTrackerQueryUpdate) {
    auto tg = t->cluster().PickUpdate(group, id->fields.source_ip, id->fields.create_time,
                                      UnixSeconds());
    if (!tg.ok()) return c->ReplyStatus(tg.status());
    AppendTarget(&out, *tg);
  } else {
    bool all = h.cmd == proto::kTrackerQueryFetchAll;
    auto targets = t->cluster().PickFetch(group, id->fields.source_ip, all, id->fields.create_time,
                                          UnixSeconds());
    if (!targets.ok()) return c->ReplyStatus(targets.status());
    for (const auto& tg : *targets) AppendTarget(&out, tg);
  }
  c->Reply(0, out);
}

}  // namespace

void RegisterClientQueries(TrackerServer* t, net::FrameServer* s) {
  net::CommandSpec store;
  store.max_body = proto::kGroupNameLen;
  store.handle = [t](const ConnectionPtr& c, const FrameHeader& h, std::string body) {
    QueryStore(t, c, h, std::move(body));
  };
  for (uint8_t cmd : {proto::kTrackerQueryStoreNoGroupOne, proto::kTrackerQueryStoreWithGroupOne,
                      proto::kTrackerQueryStoreNoGroupAll, proto::kTrackerQueryStoreWithGroupAll}) {
    s->Register(cmd, store);
  }
  net::CommandSpec fetch;
  fetch.max_body = proto::kGroupNameLen + proto::kMaxRemoteNameLen;
  fetch.handle = [t](const ConnectionPtr& c, const FrameHeader& h, std::string body) {
    QueryFetch(t, c, h, std::move(body));
  };
  for (uint8_t cmd : {proto::kTrackerQueryFetchOne, proto::kTrackerQueryFetchAll,
                      proto::kTrackerQueryUpdate}) {
    s->Register(cmd, fetch);
  }
}

}  // namespace depot::tracker
