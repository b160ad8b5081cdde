// Depot-internal storage<->tracker commands: join (210) and heartbeat (211). Both need the
// cluster-secret handshake first. Bodies are JSON (common/proto/internal.h, doc/protocol.md).
#include "common/base/hash.h"
#include "common/base/logging.h"
#include "tracker/tracker_server.h"

namespace depot::tracker {
namespace {

using net::ConnectionPtr;
using proto::FrameHeader;

void Join(TrackerServer* t, const ConnectionPtr& c, const FrameHeader&, std::string body) {
  auto info = proto::DecodeJoin(body);
  if (!info.ok()) {
    DEPOT_LOG_WARN("{}: bad join: {}", c->peer(), info.status().ToString());
    return c->Reply(EINVAL);
  }
  // FastDFS hands out the address the storage connected from; Depot uses what the storage
  // advertises and falls back to the peer address only when it advertises nothing.
  if (info->ip.empty() || info->ip == "0.0.0.0") info->ip = c->peer_ip();
  uint64_t seq = 0;
  auto joined = t->cluster().Join(*info, UnixSeconds(), &seq);
  if (!joined.ok()) return c->ReplyStatus(joined.status());
  std::string id = *joined;
  t->PersistMember(*info);
  DEPOT_LOG_INFO("storage {} joined group {} ({} store paths)", id, info->group,
                 info->store_path_count);
  // The storage keeps this connection for its heartbeats: when it drops, the storage is gone
  // and clients must not be sent there (FastDFS waits for a heartbeat timeout instead).
  c->set_close_hook([t, id, seq] {
    DEPOT_LOG_INFO("storage {} disconnected: OFFLINE", id);
    t->cluster().ConnectionLost(id, seq);
  });
  c->Reply(0, proto::EncodeJoinReply(id));
}

void Heartbeat(TrackerServer* t, const ConnectionPtr& c, const FrameHeader&, std::string body) {
  auto hb = proto::DecodeHeartbeat(body);
  if (!hb.ok()) {
    DEPOT_LOG_WARN("{}: bad heartbeat: {}", c->peer(), hb.status().ToString());
    return c->Reply(EINVAL);
  }
  Status s = t->cluster().Heartbeat(hb->id, *hb, UnixSeconds());
  if (!s.ok()) return c->ReplyStatus(s);
  std::vector<proto::PeerInfo> peers;
  std::string group;
  for (const auto& g : t->cluster().AllGroupStats()) {
    for (const auto& m : t->cluster().Members(g.group_name)) {
      if (m.id == hb->id) group = g.group_name;
    }
  }
  for (const auto& m : t->cluster().Members(group)) {
    peers.push_back({m.id, m.info.ip, m.info.port, static_cast<int>(m.state), m.info.http_port});
  }
  c->Reply(0, proto::EncodeHeartbeatReply(peers));
}

}  // namespace

void RegisterStorageChannel(TrackerServer* t, net::FrameServer* s) {
  net::CommandSpec join;
  join.max_body = 4096;
  join.internal = true;
  join.handle = [t](const ConnectionPtr& c, const FrameHeader& h, std::string body) {
    Join(t, c, h, std::move(body));
  };
  s->Register(proto::kDepotStorageJoin, join);
  net::CommandSpec hb;
  hb.max_body = 64 * 1024;
  hb.internal = true;
  hb.handle = [t](const ConnectionPtr& c, const FrameHeader& h, std::string body) {
    Heartbeat(t, c, h, std::move(body));
  };
  s->Register(proto::kDepotStorageHeartbeat, hb);
}

}  // namespace depot::tracker
