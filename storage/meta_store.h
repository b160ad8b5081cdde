// MetaStore: the storage server's LevelDB (base_path/data/storage.db). Key schema
// (doc/storage-layout.md):
//   "m/<remote name>"  -> FastDFS metadata bytes (key\x02value joined by \x01, sorted by key)
//   "sys/join_time"    -> decimal unix time of the first start
// Blocking: call from disk threads or at start-up. Thread-safe.
#pragma once

#include <map>
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

 private:
  MetaStore(leveldb::DB* db, bool sync) : db_(db), sync_(sync) {}
  leveldb::DB* db_;  // owned
  bool sync_;
};

}  // namespace depot::storage
