// Dedup: identical content stored once per member while every upload keeps its own file ID
// (doc/dedup.md). The dht (depot-dhtd) maps "<group>/<content key>" to the content's canonical
// file ID and a reference count: the number of live file IDs of the group with that content.
// On each member the content lives in its canonical file's inode; `<store path>/dedup/XX/YY/
// <canonical name>` is a hidden hard link that keeps the inode while any file ID shares it, and
// every file ID that shares it is one more hard link (so nginx serves it straight from disk).
//
// Local index in the member's LevelDB: "r/<remote name>" -> content key + canonical name (empty:
// stored while the dht was down, not registered yet). Peers learn it from the dedup head of a
// replicated create.
//
// Nothing here ever makes a file ID show other bytes than its own: a file is linked to stored
// content only after a byte-by-byte comparison on this member, or (on a peer) to its copy of
// the canonical file ID, whose bytes are the source's by replication.
//
// Thread-safe. Calls that reach the dht or the disk run on disk threads, never on a loop.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/proto/dedup.h"
#include "common/proto/file_id.h"
#include "dht/dht_proto.h"

namespace prometheus {
class Counter;
class Registry;
template <typename T>
class Family;
class Histogram;
}  // namespace prometheus

namespace depot::dht {
class DhtClient;
}  // namespace depot::dht

namespace depot::storage {

class DiskExecutor;
class StorageServer;
class StorePath;

// Streams XXH3-128 over an upload's bytes. Test hook: when DEPOT_DEDUP_FIXED_FINGERPRINT holds
// 32 hex digits, every digest is that value (to force collisions).
class Fingerprinter {
 public:
  Fingerprinter();
  ~Fingerprinter();
  Fingerprinter(const Fingerprinter&) = delete;
  Fingerprinter& operator=(const Fingerprinter&) = delete;
  void Update(const void* data, size_t len);
  std::string Digest() const;  // 16 bytes
  // The fingerprint of a file's bytes (the scan, the client's instant upload).
  static Result<std::string> OfFile(int fd, uint64_t size);

 private:
  void* state_;
};

// The local index entry of a file.
struct DedupRef {
  proto::ContentKey key;
  std::string canonical;  // remote name; empty: not registered in the dht
  std::string Encode() const;
  static Result<DedupRef> Decode(const std::string& v);
};

class Dedup {
 public:
  explicit Dedup(StorageServer* s);
  ~Dedup();

  bool enabled() const { return client_ != nullptr; }
  // True when an upload of `size` bytes is looked up.
  bool Eligible(uint64_t size) const;

  // What the dht knows about a content.
  enum class Lookup { kMiss, kHit, kUnavailable };
  struct Found {
    Lookup kind = Lookup::kMiss;
    std::string canonical;  // kHit: the canonical remote name
    uint64_t version = 0;
    int64_t count = 0;
  };
  Found Find(const proto::ContentKey& k);

  // Serialises, per content, the link and unlink of its hidden file on this member.
  std::mutex& KeyLock(const proto::ContentKey& k);
  // `<root>/dedup/XX/YY/<name>` of a canonical file.
  static std::string HiddenPath(StorePath* p, const proto::FileId& canonical);
  // The hidden link of `canonical` on this member, made from its data file when missing.
  // NotFound when this member has neither. Call with KeyLock held.
  Result<std::string> EnsureHidden(StorePath* p, const proto::FileId& canonical);
  // True when `size` bytes of `fd` (from offset 0) equal the file at `path`.
  static Result<bool> SameBytes(int fd, const std::string& path, uint64_t size);
  // Replaces the existing file `to` with a link to `from` in one step; NotFound when `to` is
  // gone (never recreates a deleted name).
  static Status ReplaceWithLink(const std::string& from, const std::string& to);
  // Links `from` to `to` (replacing `to` atomically when it exists and `replace`).
  static Status LinkFile(const std::string& from, const std::string& to, bool replace);

  // dht steps of an upload. AddRef: one more reference (NotFound: the record is gone).
  Result<dht::Record> AddRef(const proto::ContentKey& k, int64_t delta = 1);
  // Registers `name` as holding content `k`: creates the record with `name` as canonical, or
  // (the content got registered meanwhile) adds a reference. Returns the canonical name.
  // Unavailable when the dht cannot be reached.
  Result<std::string> Register(const proto::ContentKey& k, const std::string& name);
  // Makes `name` the canonical file of a record whose canonical file is gone (CAS on version).
  Result<std::string> Rehome(const proto::ContentKey& k, const Found& old, const std::string& name);

  // One upload per content at a time on this member decides how it is stored (so that
  // concurrent uploads of new content leave one copy, not one each). Begin: true when the caller
  // goes first; false: `retry` runs (on some thread) when the one in front has finished.
  bool BeginUpload(const proto::ContentKey& k, std::function<void()> retry);
  void EndUpload(const proto::ContentKey& k);
  // Shutdown: uploads still waiting for their turn are dropped (their connections are closing),
  // never handed to disk threads that may be gone; the dedup threads finish what they run and
  // stop, and later Submit()s are dropped.
  void Stop();
  // Runs `task` on the dedup threads (`dedup_threads`): the steps of an upload that wait on the
  // dht, so that the store paths' writer threads keep writing meanwhile.
  void Submit(std::function<void()> task);

  // A member that got a content whose canonical file it does not have yet keeps its own copy
  // as a stand-in, so that further uploads of it here share that copy (the scan merges them
  // into the canonical file later). "x/<content key>" -> remote name.
  Status PutStandIn(const proto::ContentKey& k, const std::string& name);
  std::optional<std::string> GetStandIn(const proto::ContentKey& k);

  // Local index.
  Status PutIndex(const std::string& name, const DedupRef& ref);
  Result<std::optional<DedupRef>> GetIndex(const std::string& name);

  // After the name `name` was removed from this member: drops its index entry and the hidden
  // link of its canonical file when no file ID shares it any more. `release`: this member served
  // the client's delete, so the reference also leaves the dht (its count reaching 0 removes the
  // record).
  void Forget(StorePath* p, const std::string& name, bool release);

  // The repair scan (232): reconciles this member's files, its index and the dht.
  Result<proto::DedupScanReport> Scan(const proto::DedupScanRequest& req);

  // Metrics.
  void CountHit(uint64_t bytes);
  void CountMiss();
  void CountCollision();
  void CountSkipped(const char* reason);
  void CountInstant(const char* result);

 private:
  std::string DhtKey(const proto::ContentKey& k) const;
  bool DhtDown();  // a recent failure: skip the dht for a moment
  void NoteDhtResult(const Status& s);

  StorageServer* s_;
  std::unique_ptr<dht::DhtClient> client_;
  std::array<std::mutex, 64> key_locks_;
  std::atomic<int64_t> down_until_ns_{0};
  std::mutex scan_mu_;  // one scan at a time
  std::mutex uploads_mu_;
  bool stopping_ = false;  // GUARDED_BY(uploads_mu_)
  std::mutex pool_mu_;
  std::unique_ptr<DiskExecutor> pool_;  // GUARDED_BY(pool_mu_) for replacement; null once stopped
  std::map<std::string, std::vector<std::function<void()>>> uploads_;  // GUARDED_BY(uploads_mu_)

  prometheus::Counter* hits_ = nullptr;
  prometheus::Counter* misses_ = nullptr;
  prometheus::Counter* saved_ = nullptr;
  prometheus::Counter* collisions_ = nullptr;
  prometheus::Family<prometheus::Counter>* skipped_ = nullptr;
  prometheus::Family<prometheus::Counter>* instant_ = nullptr;
  prometheus::Family<prometheus::Histogram>* dht_seconds_ = nullptr;
  prometheus::Family<prometheus::Counter>* dht_errors_ = nullptr;
};

}  // namespace depot::storage
