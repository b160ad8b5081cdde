// MetaStore: the storage server's LevelDB (base_path/data/storage.db). Key schema
// (doc/storage-layout.md):
//   "m/<remote name>"  -> FastDFS metadata bytes (key\x02value joined by \x01, sorted by key)
//   "mv/<remote name>" -> metadata version (decimal unix nanoseconds; last writer wins)
//   "t/<remote name>"  -> tombstone of a deleted file (decimal unix time): a replicated create of
//                         that name is ignored, so a late copy never resurrects a deleted file
//   "sys/join_time"    -> decimal unix time of the first start
//   "sys/caught_up"    -> "1" once this member has caught up with its group
//   "sync/applied/<origin hex>" -> last oseq applied from that origin (doc/replication.md)
//   "sync/out/<peer id>"        -> a pusher's binlog position hint for that peer
// Blocking: call from disk threads or at start-up. Thread-safe.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "common/base/status.h"
#include "common/proto/metadata.h"

namespace leveldb {
class DB;
}

namespace depot::storage {

// The metadata codec lives in common/proto/metadata.h (clients use it too).
using proto::EncodeMeta;
using proto::MetaMap;
using proto::ParseMeta;

class MetaStore {
 public:
  static Result<std::unique_ptr<MetaStore>> Open(const std::string& dir, bool sync);
  ~MetaStore();

  Result<std::optional<std::string>> Get(const std::string& key);
  Status Put(const std::string& key, const std::string& value);
  Status Delete(const std::string& key);
  // Calls fn(key, value) for every key starting with `prefix`, in key order.
  Status Scan(const std::string& prefix,
              const std::function<void(const std::string&, const std::string&)>& fn);

 private:
  MetaStore(leveldb::DB* db, bool sync) : db_(db), sync_(sync) {}
  leveldb::DB* db_;  // owned
  bool sync_;
};

}  // namespace depot::storage
