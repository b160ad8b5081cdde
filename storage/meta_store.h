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

namespace leveldb {
class DB;
}

namespace depot::storage {

using MetaMap = std::map<std::string, std::string>;

// Parses FastDFS metadata bytes. InvalidArgument on a key over 64 bytes, a value over 256, an
// empty key or a record without the \x02 separator.
Result<MetaMap> ParseMeta(std::string_view bytes);
std::string EncodeMeta(const MetaMap& meta);

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
