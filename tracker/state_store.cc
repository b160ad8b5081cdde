#include "tracker/state_store.h"

#include <leveldb/db.h>
#include <leveldb/write_batch.h>

#include "common/base/fs.h"
#include "common/base/logging.h"
#include "tracker/cluster_map.h"

namespace depot::tracker {

Result<std::unique_ptr<StateStore>> StateStore::Open(const std::string& dir) {
  DEPOT_RETURN_IF_ERROR(MakeDirs(dir));
  leveldb::Options options;
  options.create_if_missing = true;
  leveldb::DB* db = nullptr;
  leveldb::Status s = leveldb::DB::Open(options, dir + "/tracker.db", &db);
  if (!s.ok()) return Status::IOError("open tracker state", s.ToString());
  return std::unique_ptr<StateStore>(new StateStore(db));
}

StateStore::~StateStore() { delete db_; }

Status StateStore::PutMember(const proto::JoinInfo& info) {
  std::string key = "member/" + info.group + "/" + MemberId(info.ip, info.port);
  leveldb::WriteOptions wo;
  wo.sync = true;
  leveldb::Status s = db_->Put(wo, key, proto::EncodeJoin(info));
  if (!s.ok()) return Status::IOError("write tracker state", s.ToString());
  return Status::OK();
}

Result<std::vector<proto::JoinInfo>> StateStore::LoadMembers() {
  std::vector<proto::JoinInfo> out;
  std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(leveldb::ReadOptions()));
  for (it->Seek("member/"); it->Valid() && it->key().starts_with("member/"); it->Next()) {
    auto info = proto::DecodeJoin(it->value().ToString());
    if (!info.ok()) {
      DEPOT_LOG_WARN("tracker state: skipping corrupt record {}: {}", it->key().ToString(),
                     info.status().ToString());
      continue;
    }
    out.push_back(*info);
  }
  if (!it->status().ok()) return Status::Corruption("read tracker state", it->status().ToString());
  return out;
}

}  // namespace depot::tracker
