#include "dht/dht_client.h"

#include <cerrno>
#include <map>
#include <set>

#include "common/base/hash.h"
#include "common/proto/protocol.h"

namespace depot::dht {
namespace {

constexpr uint64_t kMaxRecordReply = kRecordHeadLen + kMaxValueLen;

// The greatest key that sorts before every key starting with `prefix` (SCAN's start is
// exclusive). Keys are at most kMaxKeyLen bytes, so padding with 0xFF up to that length is enough.
std::string ScanStartFor(std::string_view prefix) {
  if (prefix.empty()) return {};
  std::string s(prefix);
  unsigned char last = static_cast<unsigned char>(s.back());
  s.pop_back();
  if (last == 0) return s;
  s.push_back(static_cast<char>(last - 1));
  if (s.size() < kMaxKeyLen) s.append(kMaxKeyLen - s.size(), '\xFF');
  return s;
}

bool ExpectedStatus(uint8_t st) { return st == 0 || st == ENOENT || st == EEXIST || st == EBUSY; }

Result<Record> RecordReply(const net::Reply& r, const std::string& what, Record* current) {
  if (r.status == 0) return DecodeRecord(r.body);
  if ((r.status == EEXIST || r.status == EBUSY) && current != nullptr) {
    auto cur = DecodeRecord(r.body);
    if (cur.ok()) *current = std::move(*cur);
  }
  return proto::WireToStatus(r.status, what);
}

}  // namespace

DhtClient::DhtClient(DhtClientOptions o)
    : opt_(std::move(o)), pool_(opt_.secret, opt_.timeout_ms) {}

std::shared_ptr<const Ring> DhtClient::CurrentRing() {
  bool force;
  {
    std::lock_guard<std::mutex> l(mu_);
    force = ring_ == nullptr;
  }
  Refresh(force);
  std::lock_guard<std::mutex> l(mu_);
  return ring_;
}

void DhtClient::Refresh(bool force) {
  std::shared_ptr<const Ring> old;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!force && MonotonicNanos() - last_refresh_ns_ < int64_t{opt_.refresh_ms} * 1000000) return;
    old = ring_;
  }
  // One refresh at a time; callers that find one running go on with the current view.
  std::unique_lock<std::mutex> r(refresh_mu_, std::defer_lock);
  if (force) {
    r.lock();
    std::lock_guard<std::mutex> l(mu_);
    if (ring_ != nullptr && ring_ != old) return;  // another thread just did it
  } else if (!r.try_lock()) {
    return;
  }
  std::set<std::string> candidates(opt_.seeds.begin(), opt_.seeds.end());
  if (old) candidates.insert(old->nodes().begin(), old->nodes().end());
  // Membership only grows (doc/dht.md): the new view is the old one plus whatever any node knows.
  std::set<std::string> known;
  if (old) known.insert(old->nodes().begin(), old->nodes().end());
  bool any = false;
  for (const auto& node : candidates) {
    auto reply = pool_.Call(node, kDhtNodes, {}, 64 * 1024);
    if (!reply.ok() || reply->status != 0) continue;
    auto list = DecodeNodeList(reply->body);
    if (!list.ok()) continue;
    any = true;
    known.insert(node);
    known.insert(list->begin(), list->end());
  }
  if (!any && known.empty()) known.insert(opt_.seeds.begin(), opt_.seeds.end());
  auto ring = std::make_shared<const Ring>(std::vector<std::string>(known.begin(), known.end()));
  std::lock_guard<std::mutex> l(mu_);
  ring_ = std::move(ring);
  last_refresh_ns_ = MonotonicNanos();
}

Result<net::Reply> DhtClient::CallNode(const char* op, const std::string& node, uint8_t cmd,
                                       std::string_view body, uint64_t max_reply) {
  int64_t t0 = MonotonicNanos();
  auto reply = pool_.Call(node, cmd, body, max_reply);
  if (opt_.observer) {
    bool ok = reply.ok() && ExpectedStatus(reply->status);
    opt_.observer(op, node, static_cast<double>(MonotonicNanos() - t0) / 1e9, ok);
  }
  return reply;
}

std::shared_ptr<const Ring> DhtClient::NewerRing(const std::shared_ptr<const Ring>& old) {
  Refresh(/*force=*/true);
  std::shared_ptr<const Ring> now;
  {
    std::lock_guard<std::mutex> l(mu_);
    now = ring_;
  }
  if (now == nullptr || now->nodes() == old->nodes()) return nullptr;
  return now;
}

Result<net::Reply> DhtClient::Write(const char* op, std::string_view key, uint8_t cmd,
                                    const std::string& body) {
  auto ring = CurrentRing();
  std::string last = "no dht nodes";
  // A node answers EAGAIN while it catches up or when it is not in the key's preference list
  // (this view is stale: a node joined). When no node of the list took the write and one said
  // EAGAIN, the list is tried again on a refreshed view, if that view differs.
  for (int pass = 0; pass < 2 && ring != nullptr; ++pass) {
    bool eagain = false;
    for (const auto& node : ring->Preference(key, opt_.replicas)) {
      auto reply = CallNode(op, node, cmd, body, kMaxRecordReply);
      if (!reply.ok()) {
        last = node + ": " + reply.status().ToString();
        continue;
      }
      if (reply->status == EAGAIN) {
        eagain = true;
        last = node + ": catching up or not an owner";
        continue;
      }
      return reply;
    }
    if (!eagain) break;
    ring = NewerRing(ring);
  }
  return Status::Unavailable(std::string("dht ") + op + ": no replica answered; last:", last);
}

Result<std::optional<Record>> DhtClient::Get(std::string_view key) {
  DEPOT_RETURN_IF_ERROR(ValidateKey(key));
  auto ring = CurrentRing();
  std::string body = EncodeKeyRequest({std::string(key)});
  bool answered = false;
  std::string last = "no dht nodes";
  // As in Write: a second pass on a refreshed view when a node said EAGAIN and none had the key.
  for (int pass = 0; pass < 2 && ring != nullptr; ++pass) {
    bool eagain = false;
    for (const auto& node : ring->Preference(key, opt_.replicas)) {
      auto reply = CallNode("get", node, kDhtGet, body, kMaxRecordReply);
      if (!reply.ok()) {
        last = node + ": " + reply.status().ToString();
        continue;
      }
      if (reply->status == EAGAIN) {
        eagain = true;
        last = node + ": catching up or not an owner";
        continue;
      }
      if (reply->status == ENOENT) {
        // An owner that is serving (not catching up: that is EAGAIN) has every key it owns, or
        // gets it from hints and anti-entropy: its "no" is the answer. Asking the next replica
        // too would double the cost of every miss (every new content a storage registers).
        return std::optional<Record>();
      }
      if (reply->status != 0) return proto::WireToStatus(reply->status, "dht get on " + node);
      auto rec = DecodeRecord(reply->body);
      if (!rec.ok()) {
        last = node + ": " + rec.status().ToString();
        continue;
      }
      answered = true;
      if (rec->tombstone) continue;
      return std::optional<Record>(std::move(*rec));
    }
    if (!eagain) break;
    ring = NewerRing(ring);
  }
  if (answered) return std::optional<Record>();
  return Status::Unavailable("dht get: no replica answered; last:", last);
}

Result<Record> DhtClient::PutIfAbsent(std::string_view key, std::string_view value, int64_t count,
                                      Record* current) {
  DEPOT_RETURN_IF_ERROR(ValidateKey(key));
  DEPOT_RETURN_IF_ERROR(ValidateValue(value));
  DEPOT_ASSIGN_OR_RETURN(auto reply, Write("put", key, kDhtPutIfAbsent,
                                           EncodePutRequest({std::string(key), count,
                                                             std::string(value)})));
  return RecordReply(reply, "dht put_if_absent", current);
}

Result<Record> DhtClient::Add(std::string_view key, int64_t delta) {
  DEPOT_RETURN_IF_ERROR(ValidateKey(key));
  DEPOT_ASSIGN_OR_RETURN(auto reply,
                         Write("add", key, kDhtAdd, EncodeAddRequest({std::string(key), delta})));
  return RecordReply(reply, "dht add", nullptr);
}

Result<Record> DhtClient::CompareAndSet(std::string_view key, uint64_t expected_version,
                                        std::string_view value, int64_t count, Record* current) {
  DEPOT_RETURN_IF_ERROR(ValidateKey(key));
  DEPOT_RETURN_IF_ERROR(ValidateValue(value));
  DEPOT_ASSIGN_OR_RETURN(
      auto reply, Write("cas", key, kDhtCas,
                        EncodeCasRequest({std::string(key), expected_version, count,
                                          std::string(value)})));
  return RecordReply(reply, "dht cas", current);
}

Status DhtClient::Remove(std::string_view key, uint64_t expected_version) {
  DEPOT_RETURN_IF_ERROR(ValidateKey(key));
  DEPOT_ASSIGN_OR_RETURN(auto reply, Write("remove", key, kDhtRemove,
                                           EncodeRemoveRequest({std::string(key),
                                                                expected_version})));
  return proto::WireToStatus(reply.status, "dht remove");
}

Status DhtClient::ScanNode(const std::string& node, std::string_view prefix,
                           std::vector<std::pair<std::string, Record>>* out) {
  ScanRequest req;
  req.start = ScanStartFor(prefix);
  req.limit = kMaxScanLimit;
  req.include_tombstones = true;  // a newer tombstone on one node hides an older live copy
  for (;;) {
    DEPOT_ASSIGN_OR_RETURN(auto reply,
                           CallNode("scan", node, kDhtScan, EncodeScanRequest(req), kMaxScanReply));
    if (reply.status != 0) return proto::WireToStatus(reply.status, "dht scan on " + node);
    DEPOT_ASSIGN_OR_RETURN(auto page, DecodeScanReply(reply.body));
    for (auto& [key, rec] : page.entries) {
      if (key.compare(0, prefix.size(), prefix) != 0) return Status::OK();  // past the prefix
      out->emplace_back(std::move(key), std::move(rec));
    }
    if (!page.more || page.entries.empty()) return Status::OK();
    req.start = out->back().first;
  }
}

Result<std::vector<std::pair<std::string, Record>>> DhtClient::ScanPrefix(
    std::string_view prefix) {
  if (prefix.size() > kMaxKeyLen) return Status::InvalidArgument("dht scan: prefix too long");
  auto ring = CurrentRing();
  std::map<std::string, Record> merged;
  bool any = false;
  std::string last = "no dht nodes";
  for (const auto& node : ring->nodes()) {
    std::vector<std::pair<std::string, Record>> part;
    Status s = ScanNode(node, prefix, &part);
    if (!s.ok()) {
      last = node + ": " + s.ToString();
      continue;
    }
    any = true;
    for (auto& [key, rec] : part) {
      auto it = merged.find(key);
      if (it == merged.end()) {
        merged.emplace(std::move(key), std::move(rec));
      } else if (Supersedes(rec, it->second)) {
        it->second = std::move(rec);
      }
    }
  }
  if (!any) return Status::Unavailable("dht scan: no node answered; last:", last);
  std::vector<std::pair<std::string, Record>> out;
  for (auto& [key, rec] : merged) {
    if (!rec.tombstone) out.emplace_back(key, std::move(rec));
  }
  return out;
}

std::vector<std::string> DhtClient::Nodes() { return CurrentRing()->nodes(); }

Result<std::vector<NodeStats>> DhtClient::Stats() {
  auto ring = CurrentRing();
  std::vector<NodeStats> out;
  for (const auto& node : ring->nodes()) {
    NodeStats ns;
    ns.node = node;
    auto reply = pool_.Call(node, kDhtStats, {}, 64);
    if (reply.ok() && reply->status == 0) {
      auto st = DecodeStatsReply(reply->body);
      if (st.ok()) {
        ns.up = true;
        ns.keys = st->keys;
        ns.references = st->references;
      }
    }
    out.push_back(std::move(ns));
  }
  return out;
}

}  // namespace depot::dht
