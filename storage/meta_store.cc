#include "storage/meta_store.h"

#include <leveldb/db.h>

#include "common/base/fs.h"
#include "common/proto/protocol.h"

namespace depot::storage {

Result<MetaMap> ParseMeta(std::string_view bytes) {
  MetaMap out;
  if (bytes.empty()) return out;
  size_t pos = 0;
  while (pos <= bytes.size()) {
    size_t end = bytes.find('\x01', pos);
    if (end == std::string_view::npos) end = bytes.size();
    std::string_view rec = bytes.substr(pos, end - pos);
    size_t sep = rec.find('\x02');
    if (sep == std::string_view::npos) return Status::InvalidArgument("metadata record without value");
    std::string_view key = rec.substr(0, sep), value = rec.substr(sep + 1);
    if (key.empty()) return Status::InvalidArgument("empty metadata key");
    if (key.size() > proto::kMaxMetaKeyLen) {
      return Status::InvalidArgument("metadata key longer than 64 bytes");
    }
    if (value.size() > proto::kMaxMetaValueLen) {
      return Status::InvalidArgument("metadata value longer than 256 bytes");
    }
    out[std::string(key)] = std::string(value);
    pos = end + 1;
  }
  return out;
}

std::string EncodeMeta(const MetaMap& meta) {
  std::string out;
  for (const auto& [k, v] : meta) {
    if (!out.empty()) out.push_back('\x01');
    out += k;
    out.push_back('\x02');
    out += v;
  }
  return out;
}

Result<std::unique_ptr<MetaStore>> MetaStore::Open(const std::string& dir, bool sync) {
  DEPOT_RETURN_IF_ERROR(MakeDirs(dir));
  leveldb::Options options;
  options.create_if_missing = true;
  leveldb::DB* db = nullptr;
  leveldb::Status s = leveldb::DB::Open(options, dir + "/storage.db", &db);
  if (!s.ok()) return Status::IOError("open storage state", s.ToString());
  return std::unique_ptr<MetaStore>(new MetaStore(db, sync));
}

MetaStore::~MetaStore() { delete db_; }

Result<std::optional<std::string>> MetaStore::Get(const std::string& key) {
  std::string v;
  leveldb::Status s = db_->Get(leveldb::ReadOptions(), key, &v);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return Status::IOError("read storage state", s.ToString());
  return std::optional<std::string>(std::move(v));
}

Status MetaStore::Put(const std::string& key, const std::string& value) {
  leveldb::WriteOptions wo;
  wo.sync = sync_;
  leveldb::Status s = db_->Put(wo, key, value);
  if (!s.ok()) return Status::IOError("write storage state", s.ToString());
  return Status::OK();
}

Status MetaStore::Delete(const std::string& key) {
  leveldb::WriteOptions wo;
  wo.sync = sync_;
  leveldb::Status s = db_->Delete(wo, key);
  if (!s.ok()) return Status::IOError("write storage state", s.ToString());
  return Status::OK();
}

}  // namespace depot::storage
