// The dht command table (246..255, doc/dht.md). A handler decodes on the network loop, refuses
// client operations with EAGAIN while the node catches up (and, on the worker, for keys this node
// does not own), and runs the rest on a worker pool
// (Store calls block on LevelDB; coordinated writes also call the other replicas).
#include <cerrno>
#include <utility>

#include "common/base/logging.h"
#include "common/proto/protocol.h"
#include "dht/dht_server.h"

namespace depot::dht {
namespace {

using net::ConnectionPtr;
using proto::FrameHeader;

struct Answer {
  uint8_t status = 0;
  std::string body;
};

Answer Fail(const Status& s) { return {proto::StatusToWire(s), {}}; }
Answer WithRecord(uint8_t status, const Record& r) { return {status, EncodeRecord(r)}; }

// A node outside the key's preference list (in its view) does not serve it: the client has a
// stale ring (a node joined) and would otherwise create or change the record on a copy no owner
// sees, or read a copy no longer updated. EAGAIN sends the client to its next node; a client
// whose whole list answers EAGAIN refreshes its membership and tries again (dht_client.cc).
bool NotOwner(DhtServer* d, std::string_view key) { return !d->Owns(key); }
const Answer kNotOwner{EAGAIN, {}};

// A write that succeeded: replicate, then answer with the new record.
Answer Written(DhtServer* d, const std::string& key, const Record& r, bool with_body = true) {
  d->Replicate(key, r);
  d->UpdateGauges();
  return with_body ? WithRecord(0, r) : Answer{};
}

Answer Get(DhtServer* d, std::string_view body) {
  auto req = DecodeKeyRequest(body);
  if (!req.ok()) return Fail(req.status());
  if (NotOwner(d, req->key)) return kNotOwner;
  auto r = d->store().Get(req->key);
  if (!r.ok()) return Fail(r.status());
  if (!r->has_value() || (*r)->tombstone) return {ENOENT, {}};
  return WithRecord(0, **r);
}

Answer PutIfAbsent(DhtServer* d, std::string_view body) {
  auto req = DecodePutRequest(body);
  if (!req.ok()) return Fail(req.status());
  if (NotOwner(d, req->key)) return kNotOwner;
  Record current;
  auto r = d->store().PutIfAbsent(req->key, req->value, req->count, &current);
  if (r.status().code() == StatusCode::kAlreadyExists) return WithRecord(EEXIST, current);
  if (!r.ok()) return Fail(r.status());
  return Written(d, req->key, *r);
}

Answer Add(DhtServer* d, std::string_view body) {
  auto req = DecodeAddRequest(body);
  if (!req.ok()) return Fail(req.status());
  if (NotOwner(d, req->key)) return kNotOwner;
  auto r = d->store().Add(req->key, req->delta);
  if (!r.ok()) return Fail(r.status());
  return Written(d, req->key, *r);
}

Answer CompareAndSet(DhtServer* d, std::string_view body) {
  auto req = DecodeCasRequest(body);
  if (!req.ok()) return Fail(req.status());
  if (NotOwner(d, req->key)) return kNotOwner;
  Record current;
  auto r = d->store().CompareAndSet(req->key, req->expected_version, req->value, req->count,
                                    &current);
  if (r.status().code() == StatusCode::kBusy) return WithRecord(EBUSY, current);
  if (!r.ok()) return Fail(r.status());
  return Written(d, req->key, *r);
}

Answer Remove(DhtServer* d, std::string_view body) {
  auto req = DecodeRemoveRequest(body);
  if (!req.ok()) return Fail(req.status());
  if (NotOwner(d, req->key)) return kNotOwner;
  Record current;
  auto r = d->store().Remove(req->key, req->expected_version, &current);
  if (r.status().code() == StatusCode::kBusy) return WithRecord(EBUSY, current);
  if (!r.ok()) return Fail(r.status());
  return Written(d, req->key, *r, /*with_body=*/false);
}

Answer Scan(DhtServer* d, std::string_view body) {
  auto req = DecodeScanRequest(body);
  if (!req.ok()) return Fail(req.status());
  std::function<bool(std::string_view)> accept;
  std::shared_ptr<Ring> ring;
  if (req->has_filter) {
    ring = std::make_shared<Ring>(req->nodes, d->config().vnodes);
    if (ring->nodes().size() != req->nodes.size()) {
      return Fail(Status::InvalidArgument("dht scan: duplicate node in the filter"));
    }
    std::string target = req->nodes[req->index];
    int replicas = req->replicas;
    accept = [ring, target, replicas](std::string_view key) {
      return ring->Owns(target, key, replicas);
    };
  }
  auto page = d->store().Scan(req->start, req->limit, req->include_tombstones, accept,
                              kScanReplySoftLimit);
  if (!page.ok()) return Fail(page.status());
  return {0, EncodeScanReply(*page)};
}

Answer Replicate(DhtServer* d, std::string_view body) {
  auto req = DecodeReplicateRequest(body);
  if (!req.ok()) return Fail(req.status());
  auto applied = d->store().Apply(req->key, req->record);
  if (!applied.ok()) return Fail(applied.status());
  if (*applied) d->UpdateGauges();
  return {};
}

Answer Nodes(DhtServer* d, std::string_view body) {
  if (!body.empty()) return Fail(Status::InvalidArgument("dht nodes: body must be empty"));
  return {0, EncodeNodeList(d->Members())};
}

Answer Join(DhtServer* d, std::string_view body) {
  auto node = DecodeJoinRequest(body);
  if (!node.ok()) return Fail(node.status());
  auto added = d->AddMembers({*node});
  if (!added.empty()) d->ForwardJoin(*node, *node);
  return {0, EncodeNodeList(d->Members())};
}

Answer Stats(DhtServer* d, std::string_view body) {
  if (!body.empty()) return Fail(Status::InvalidArgument("dht stats: body must be empty"));
  return {0, EncodeStatsReply({d->store().live_keys(), d->store().references()})};
}

enum class Kind { kClient, kPeer };

struct Entry {
  uint8_t cmd;
  Kind kind;
  uint64_t max_body;
  Answer (*fn)(DhtServer*, std::string_view);
};

constexpr uint64_t kKey = 2 + kMaxKeyLen;
constexpr uint64_t kRecord = kRecordHeadLen + kMaxValueLen;

const Entry kTable[] = {
    {kDhtGet, Kind::kClient, kKey, Get},
    {kDhtPutIfAbsent, Kind::kClient, kKey + 8 + 4 + kMaxValueLen, PutIfAbsent},
    {kDhtAdd, Kind::kClient, kKey + 8, Add},
    {kDhtCas, Kind::kClient, kKey + 8 + 8 + 4 + kMaxValueLen, CompareAndSet},
    {kDhtRemove, Kind::kClient, kKey + 8, Remove},
    {kDhtScan, Kind::kPeer, kKey + 4 + 1 + 2 + 2 + kMaxNodes * (2 + kMaxNodeIdLen) + 2, Scan},
    {kDhtReplicate, Kind::kPeer, kKey + kRecord, Replicate},
    {kDhtNodes, Kind::kPeer, 256, Nodes},  // empty; a few bytes of garbage get EINVAL
    {kDhtJoin, Kind::kPeer, 2 + kMaxNodeIdLen, Join},
    {kDhtStats, Kind::kPeer, 256, Stats},
};

}  // namespace

void RegisterHandlers(DhtServer* d, net::FrameServer* s) {
  for (const Entry& e : kTable) {
    net::CommandSpec spec;
    spec.internal = true;
    spec.max_body = e.max_body;
    auto fn = e.fn;
    if (e.kind == Kind::kClient) {
      spec.handle = [d, fn](const ConnectionPtr& c, const FrameHeader&, std::string body) {
        // A node that is catching up may miss recent writes: send the client to another replica.
        if (d->catching_up()) return c->Reply(EAGAIN);
        d->RunOp([d, fn, c, body = std::move(body)] {
          Answer a = fn(d, body);
          c->PostReply(a.status, std::move(a.body));
        });
      };
    } else {
      spec.handle = [d, fn](const ConnectionPtr& c, const FrameHeader&, std::string body) {
        d->RunPeer([d, fn, c, body = std::move(body)] {
          Answer a = fn(d, body);
          c->PostReply(a.status, std::move(a.body));
        });
      };
    }
    s->Register(e.cmd, std::move(spec));
  }
}

}  // namespace depot::dht
