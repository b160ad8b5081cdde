#include "storage/meta_store.h"

#include <leveldb/db.h>
#include <leveldb/iterator.h>

#include "common/base/fs.h"

namespace depot::storage {

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

Status MetaStore::Scan(const std::string& prefix,
                       const std::function<void(const std::string&, const std::string&)>& fn) {
  std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(leveldb::ReadOptions()));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    fn(it->key().ToString(), it->value().ToString());
  }
  if (!it->status().ok()) return Status::IOError("scan storage state", it->status().ToString());
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
