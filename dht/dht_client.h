// DhtClient: the client of depot-dhtd that storage servers use for the dedup index (doc/dht.md).
//
// Keys are placed on the dht nodes by a consistent-hash Ring over the current membership, with
// `replicas` copies. Reads try the key's preference list in order; writes go to the first node of
// the list that answers (it coordinates the write and replicates it). Membership is learnt from
// the seeds (NODES, 247) and refreshed lazily inside calls every refresh_ms, and at once when the
// whole list answered EAGAIN (a node outside a key's preference list refuses it: stale view).
//
// Thread-safe: one client may be shared by every thread of a process. Connections are pooled per
// node and authenticated once with the cluster secret.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/base/status.h"
#include "dht/dht_proto.h"
#include "dht/node_pool.h"
#include "dht/ring.h"

namespace depot::dht {

struct DhtClientOptions {
  std::vector<std::string> seeds;  // "host:port" of dht nodes
  std::string secret;              // cluster secret: every dht command is internal
  int replicas = 2;
  int timeout_ms = 1000;  // connect and per-call I/O deadline
  int refresh_ms = 2000;  // membership (DHT_NODES) refresh period, done lazily inside calls
  // Called after every node call: op name ("get","put","add","cas","remove","scan"), the node,
  // seconds, ok.
  std::function<void(const char* op, const std::string& node, double seconds, bool ok)> observer;
};

struct NodeStats {
  std::string node;
  bool up = false;
  uint64_t keys = 0;       // live keys held by the node (replicas included)
  int64_t references = 0;  // sum of their counts
};

class DhtClient {
 public:
  explicit DhtClient(DhtClientOptions o);

  // The key's record; nullopt when the first owner that answers has none (or only a tombstone).
  // Tries the preference list in order; a node that fails or answers EAGAIN (catching up, or not
  // an owner in its newer view) -> next replica; after EAGAIN and no answer, once more on a
  // refreshed view. An owner that missed a write (its hint not delivered yet) answers "none":
  // for the dedup index that costs one extra copy, which the repair scan merges.
  // Unavailable only when no replica answered. InvalidArgument for a bad key.
  Result<std::optional<Record>> Get(std::string_view key);
  // Creates the key with version 1 (or the tombstone's version + 1). AlreadyExists when it
  // exists; *current (if non-null) then gets the existing record.
  Result<Record> PutIfAbsent(std::string_view key, std::string_view value, int64_t count,
                             Record* current = nullptr);
  // count += delta; NotFound when absent. Returns the record after.
  Result<Record> Add(std::string_view key, int64_t delta);
  // Replaces value and count when the version equals `expected_version`; Busy on mismatch
  // (*current gets the record), NotFound when absent.
  Result<Record> CompareAndSet(std::string_view key, uint64_t expected_version,
                               std::string_view value, int64_t count, Record* current = nullptr);
  // Removes (leaves a tombstone); expected_version 0 = any. NotFound when absent, Busy on a
  // version mismatch.
  Status Remove(std::string_view key, uint64_t expected_version = 0);
  // Every live key starting with `prefix`, from every node, merged by highest version
  // (tombstones dropped), sorted by key. Unavailable when no node answered.
  Result<std::vector<std::pair<std::string, Record>>> ScanPrefix(std::string_view prefix);
  // The current membership view (sorted).
  std::vector<std::string> Nodes();
  // Per node: number of live keys and sum of counts (DHT_STATS); up = false for a node that did
  // not answer.
  Result<std::vector<NodeStats>> Stats();

 private:
  std::shared_ptr<const Ring> CurrentRing();
  void Refresh(bool force);
  // One call to one node, reported to the observer.
  Result<net::Reply> CallNode(const char* op, const std::string& node, uint8_t cmd,
                              std::string_view body, uint64_t max_reply);
  // A write: the first node of the key's preference list that answers (not EAGAIN).
  // Refreshes the membership now; the new ring when its nodes differ from `old`'s, else null.
  std::shared_ptr<const Ring> NewerRing(const std::shared_ptr<const Ring>& old);
  Result<net::Reply> Write(const char* op, std::string_view key, uint8_t cmd,
                           const std::string& body);
  Status ScanNode(const std::string& node, std::string_view prefix,
                  std::vector<std::pair<std::string, Record>>* out);

  const DhtClientOptions opt_;
  NodePool pool_;
  std::mutex mu_;
  std::shared_ptr<const Ring> ring_;  // GUARDED_BY(mu_)
  int64_t last_refresh_ns_ = 0;       // GUARDED_BY(mu_)
  std::mutex refresh_mu_;             // one refresh at a time
};

}  // namespace depot::dht
