// opsd's record store: LevelDB underneath (doc/opsd-store.md), JSON documents on top.
//
// A Collection is a named set of JSON records with integer ids, versions and optional unique
// fields. Small collections (accounts, roles, files, runs) are also held in memory as immutable
// snapshots (shared_ptr<const json>), so reads and lists never touch the disk. Every change goes
// through a Txn: it holds the store's one write lock, collects the changes in a leveldb::WriteBatch
// together with their audit event, and Commit() writes the batch (synced with durable writes)
// before the in-memory view changes. So a change and its audit event are stored together or not
// at all, and a crash loses nothing acknowledged.
//
// Threading: Store, Collection and the read functions are thread-safe. A Txn belongs to one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/base/hash.h"  // UnixSeconds
#include "common/base/status.h"

namespace leveldb {
class DB;
class WriteBatch;
}  // namespace leveldb

namespace depot::opsd {

using json = nlohmann::json;
using Doc = std::shared_ptr<const json>;

class Store;

// Key layout (doc/opsd-store.md):
//   r/<collection>/<id: 12 digits>  -> JSON record
//   seq/<name>                      -> last id handed out (decimal)
//   audit/<seq: 16 digits>          -> JSON audit event
class Collection {
 public:
  // `unique` lists fields whose non-empty string values must be unique; those also in `folded`
  // compare case-insensitively (names people type), the others exactly (tokens, file IDs).
  Collection(Store* store, std::string name, std::vector<std::string> unique,
             std::vector<std::string> folded = {});
  const std::string& name() const { return name_; }

  Doc Get(int64_t id) const;                                    // nullptr when absent
  Doc FindUnique(const std::string& field, const std::string& value) const;  // nullptr: none
  std::vector<Doc> All() const;                                 // in id order
  // Every record ordered by `field` (descending with `desc`; ties in id order). Cached until the
  // collection changes, so repeated lists of a large collection do not sort again.
  std::shared_ptr<const std::vector<Doc>> Sorted(const std::string& field, bool desc) const;
  size_t size() const;

 private:
  friend class Store;
  friend class Txn;
  std::string Fold(const std::string& field, const std::string& v) const;
  std::string Key(int64_t id) const;

  Store* store_;
  std::string name_;
  std::vector<std::string> unique_;
  std::vector<std::string> folded_;
  mutable std::shared_mutex mu_;
  std::map<int64_t, Doc> docs_;                                   // GUARDED_BY(mu_)
  std::map<std::string, std::unordered_map<std::string, int64_t>> index_;  // GUARDED_BY(mu_)
  uint64_t gen_ = 0;                                              // GUARDED_BY(mu_)
  struct SortCache {
    uint64_t gen;
    std::shared_ptr<const std::vector<Doc>> docs;
  };
  mutable std::mutex sort_mu_;
  mutable std::map<std::string, SortCache> sorted_;  // GUARDED_BY(sort_mu_)
};

// Orders docs by the JSON value of `field` (missing first; descending with `desc`); ties keep
// their order.
void SortDocs(std::vector<Doc>* docs, const std::string& field, bool desc);

class Store {
 public:
  // Opens (creating) the LevelDB at `dir`. IOError/Corruption when it cannot be opened.
  static Result<std::unique_ptr<Store>> Open(const std::string& dir, bool durable);
  ~Store();

  // Registers a collection and loads its records. Corruption on an unreadable record.
  Result<Collection*> AddCollection(const std::string& name, std::vector<std::string> unique,
                                    std::vector<std::string> folded = {});
  Collection* collection(const std::string& name) const;

  // Raw reads of keys outside collections (audit events).
  Result<std::optional<std::string>> GetRaw(const std::string& key) const;
  // Visits keys with `prefix` from the largest down (newest first) while fn returns true.
  Status ScanBackward(const std::string& prefix, const std::string& before,
                      const std::function<bool(const std::string& key, const std::string& value)>& fn) const;
  Status ScanForward(const std::string& prefix,
                     const std::function<bool(const std::string& key, const std::string& value)>& fn) const;
  leveldb::DB* db() const { return db_; }

 private:
  friend class Txn;
  Store() = default;

  leveldb::DB* db_ = nullptr;
  bool durable_ = true;
  std::mutex write_mu_;                                 // one Txn at a time
  std::map<std::string, int64_t> seqs_;                 // GUARDED_BY(write_mu_)
  std::map<std::string, std::unique_ptr<Collection>> collections_;
};

// A set of changes applied atomically. Holds the store's write lock from construction until
// destruction, so reads made through it see the latest committed state and nothing changes
// between a check and the write. Changes are visible to others only after Commit().
class Txn {
 public:
  explicit Txn(Store* store);
  ~Txn();
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;

  // The next id of a sequence (reserved by this Txn; persisted on Commit).
  int64_t NextId(const std::string& seq);
  // Current state as this Txn sees it (its own pending changes included).
  Doc Get(Collection* c, int64_t id) const;
  // Inserts `doc` (its "id" set by the caller through NextId(c->name()), or assigned here).
  // Sets version 1, created_at and updated_at. AlreadyExists when a unique field clashes.
  Result<Doc> Insert(Collection* c, json doc);
  // Replaces a record: `doc` is the full new record. Busy (HTTP 409) when `expect_version` is
  // given and the stored version differs; NotFound when absent; AlreadyExists on a unique clash.
  Result<Doc> Replace(Collection* c, int64_t id, json doc, std::optional<int64_t> expect_version);
  // For bookkeeping the system does on its own (login counters): the version and updated_at
  // stay, so a client's If-Match is not broken by someone logging in.
  Result<Doc> ReplaceQuietly(Collection* c, int64_t id, json doc);
  Status Remove(Collection* c, int64_t id, std::optional<int64_t> expect_version);
  // A raw key outside collections.
  void PutRaw(const std::string& key, const std::string& value);
  bool empty() const;
  // Writes everything in one batch (synced when the store is durable), then updates the
  // in-memory views. IOError when LevelDB refuses: nothing changed.
  Status Commit();

 private:
  struct Change {
    Collection* c;
    int64_t id;
    Doc before;
    Doc after;  // nullptr: removed
  };
  Status CheckUnique(Collection* c, int64_t id, const json& doc) const;

  Store* store_;
  std::unique_lock<std::mutex> lock_;
  std::unique_ptr<leveldb::WriteBatch> batch_;
  std::vector<Change> changes_;
  std::map<std::string, int64_t> seqs_;  // reserved ids
  bool committed_ = false;
};


}  // namespace depot::opsd
