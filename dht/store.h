// Store: one dht node's LevelDB shard and the version rules of every operation (doc/dht.md,
// "LevelDB layout" and "Versions").
//
//   d/<key>   -> record (dht_proto.h EncodeRecord: version, count, flags, value)
//   n/<node>  -> empty: a member of the dht this node knows (membership survives restarts)
//
// Versions: a create is version 1, or the tombstone's version + 1 when a removed key is created
// again; every change adds 1; Remove writes a tombstone at version + 1 and the tombstone keeps it.
// Apply (replication, hints, catch-up, anti-entropy) stores a record only when it supersedes the
// local one (dht_proto.h Supersedes: a higher version, or the same version and a greater
// encoding), so replicas converge on the same record whatever the delivery order.
//
// Thread-safe: operations on one key are serialized by a striped mutex; different keys proceed in
// parallel. Calls block on LevelDB (and fsync with durable writes): never call from a loop thread.
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/status.h"
#include "dht/dht_proto.h"

namespace leveldb {
class DB;
}

namespace depot::dht {

class Store {
 public:
  // Opens (creating) the LevelDB in `dir`; with `durable` every write is synced. IOError when it
  // cannot be opened, Corruption when a stored record does not decode.
  static Result<std::unique_ptr<Store>> Open(const std::string& dir, bool durable);
  ~Store();

  // The stored record, tombstones included; nullopt when never written.
  Result<std::optional<Record>> Get(std::string_view key);
  // Creates the key. AlreadyExists (and *current) when it is live.
  Result<Record> PutIfAbsent(std::string_view key, std::string_view value, int64_t count,
                             Record* current);
  // count += delta. NotFound when absent or a tombstone; InvalidArgument on overflow.
  Result<Record> Add(std::string_view key, int64_t delta);
  // Replaces value and count when the version is `expected`. Busy (and *current) on a mismatch,
  // NotFound when absent or a tombstone.
  Result<Record> CompareAndSet(std::string_view key, uint64_t expected, std::string_view value,
                               int64_t count, Record* current);
  // Writes a tombstone; `expected` 0 = any version. Returns the tombstone. NotFound when absent or
  // already removed, Busy (and *current) on a mismatch.
  Result<Record> Remove(std::string_view key, uint64_t expected, Record* current);
  // Stores `r` when it supersedes the local record (Supersedes). Returns whether it did.
  Result<bool> Apply(std::string_view key, const Record& r);

  // Up to `limit` records with keys after `start` (exclusive; empty = from the first) that
  // `accept` takes (null: all), stopping early once the encoded entries pass `soft_bytes`.
  // `more` is set when it stopped before the last key.
  Result<ScanReply> Scan(std::string_view start, uint32_t limit, bool include_tombstones,
                         const std::function<bool(std::string_view key)>& accept,
                         size_t soft_bytes);

  // Membership persisted under n/.
  Result<std::vector<std::string>> LoadNodes();
  Status AddNode(const std::string& node);

  uint64_t live_keys() const { return live_keys_.load(); }
  int64_t references() const { return references_.load(); }

 private:
  Store(leveldb::DB* db, bool durable) : db_(db), durable_(durable) {}
  std::mutex& Stripe(std::string_view key);
  // Reads and writes one key; callers hold its stripe.
  Result<std::optional<Record>> ReadLocked(std::string_view key);
  Status WriteLocked(std::string_view key, const std::optional<Record>& old, const Record& r);

  leveldb::DB* db_;
  const bool durable_;
  std::array<std::mutex, 256> stripes_;
  std::atomic<uint64_t> live_keys_{0};
  std::atomic<int64_t> references_{0};
};

}  // namespace depot::dht
