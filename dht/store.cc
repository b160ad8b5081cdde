#include "dht/store.h"

#include <leveldb/db.h>

#include "common/base/fs.h"
#include "dht/ring.h"

namespace depot::dht {
namespace {

constexpr std::string_view kDataPrefix = "d/";
constexpr std::string_view kNodePrefix = "n/";

std::string DataKey(std::string_view key) {
  std::string k(kDataPrefix);
  k.append(key);
  return k;
}

bool Live(const std::optional<Record>& r) { return r.has_value() && !r->tombstone; }

}  // namespace

Result<std::unique_ptr<Store>> Store::Open(const std::string& dir, bool durable) {
  DEPOT_RETURN_IF_ERROR(MakeDirs(dir));
  leveldb::Options options;
  options.create_if_missing = true;
  leveldb::DB* db = nullptr;
  leveldb::Status s = leveldb::DB::Open(options, dir, &db);
  if (!s.ok()) return Status::IOError("open dht store " + dir + ":", s.ToString());
  std::unique_ptr<Store> store(new Store(db, durable));
  // The gauges (live keys, sum of counts) are kept in memory: count them once.
  std::unique_ptr<leveldb::Iterator> it(db->NewIterator(leveldb::ReadOptions()));
  uint64_t live = 0;
  int64_t refs = 0;
  for (it->Seek(leveldb::Slice(kDataPrefix.data(), kDataPrefix.size()));
       it->Valid() && it->key().starts_with(leveldb::Slice(kDataPrefix.data(), kDataPrefix.size()));
       it->Next()) {
    auto r = DecodeRecord(std::string_view(it->value().data(), it->value().size()));
    if (!r.ok()) return Status::Corruption("dht store record " + it->key().ToString() + ":",
                                           r.status().message());
    if (!r->tombstone) {
      ++live;
      refs += r->count;
    }
  }
  if (!it->status().ok()) return Status::Corruption("dht store scan:", it->status().ToString());
  store->live_keys_ = live;
  store->references_ = refs;
  return store;
}

Store::~Store() { delete db_; }

std::mutex& Store::Stripe(std::string_view key) {
  return stripes_[Ring::KeyHash(key) % stripes_.size()];
}

Result<std::optional<Record>> Store::ReadLocked(std::string_view key) {
  std::string value;
  leveldb::Status s = db_->Get(leveldb::ReadOptions(), DataKey(key), &value);
  if (s.IsNotFound()) return std::optional<Record>();
  if (!s.ok()) return Status::IOError("dht store read:", s.ToString());
  auto r = DecodeRecord(value);
  if (!r.ok()) return Status::Corruption("dht store record of key:", std::string(key));
  return std::optional<Record>(std::move(*r));
}

Status Store::WriteLocked(std::string_view key, const std::optional<Record>& old, const Record& r) {
  leveldb::WriteOptions wo;
  wo.sync = durable_;
  leveldb::Status s = db_->Put(wo, DataKey(key), EncodeRecord(r));
  if (!s.ok()) return Status::IOError("dht store write:", s.ToString());
  int64_t old_live = Live(old) ? 1 : 0;
  int64_t new_live = r.tombstone ? 0 : 1;
  live_keys_ += static_cast<uint64_t>(new_live - old_live);
  references_ += (new_live ? r.count : 0) - (old_live ? old->count : 0);
  return Status::OK();
}

Result<std::optional<Record>> Store::Get(std::string_view key) {
  std::lock_guard<std::mutex> l(Stripe(key));
  return ReadLocked(key);
}

Result<Record> Store::PutIfAbsent(std::string_view key, std::string_view value, int64_t count,
                                  Record* current) {
  std::lock_guard<std::mutex> l(Stripe(key));
  DEPOT_ASSIGN_OR_RETURN(auto old, ReadLocked(key));
  if (Live(old)) {
    if (current) *current = *old;
    return Status::AlreadyExists("dht key exists:", std::string(key));
  }
  Record r;
  r.version = old ? old->version + 1 : 1;
  r.count = count;
  r.value = std::string(value);
  DEPOT_RETURN_IF_ERROR(WriteLocked(key, old, r));
  return r;
}

Result<Record> Store::Add(std::string_view key, int64_t delta) {
  std::lock_guard<std::mutex> l(Stripe(key));
  DEPOT_ASSIGN_OR_RETURN(auto old, ReadLocked(key));
  if (!Live(old)) return Status::NotFound("dht key:", std::string(key));
  Record r = *old;
  if (__builtin_add_overflow(r.count, delta, &r.count)) {
    return Status::InvalidArgument("dht add: count overflow on key", std::string(key));
  }
  r.version += 1;
  DEPOT_RETURN_IF_ERROR(WriteLocked(key, old, r));
  return r;
}

Result<Record> Store::CompareAndSet(std::string_view key, uint64_t expected,
                                    std::string_view value, int64_t count, Record* current) {
  std::lock_guard<std::mutex> l(Stripe(key));
  DEPOT_ASSIGN_OR_RETURN(auto old, ReadLocked(key));
  if (!Live(old)) return Status::NotFound("dht key:", std::string(key));
  if (old->version != expected) {
    if (current) *current = *old;
    return Status::Busy("dht cas: version mismatch on key", std::string(key));
  }
  Record r;
  r.version = old->version + 1;
  r.count = count;
  r.value = std::string(value);
  DEPOT_RETURN_IF_ERROR(WriteLocked(key, old, r));
  return r;
}

Result<Record> Store::Remove(std::string_view key, uint64_t expected, Record* current) {
  std::lock_guard<std::mutex> l(Stripe(key));
  DEPOT_ASSIGN_OR_RETURN(auto old, ReadLocked(key));
  if (!Live(old)) return Status::NotFound("dht key:", std::string(key));
  if (expected != 0 && old->version != expected) {
    if (current) *current = *old;
    return Status::Busy("dht remove: version mismatch on key", std::string(key));
  }
  Record r;
  r.version = old->version + 1;
  r.tombstone = true;
  DEPOT_RETURN_IF_ERROR(WriteLocked(key, old, r));
  return r;
}

Result<bool> Store::Apply(std::string_view key, const Record& r) {
  std::lock_guard<std::mutex> l(Stripe(key));
  DEPOT_ASSIGN_OR_RETURN(auto old, ReadLocked(key));
  if (old && !Supersedes(r, *old)) return false;
  DEPOT_RETURN_IF_ERROR(WriteLocked(key, old, r));
  return true;
}

Result<ScanReply> Store::Scan(std::string_view start, uint32_t limit, bool include_tombstones,
                              const std::function<bool(std::string_view key)>& accept,
                              size_t soft_bytes) {
  ScanReply out;
  size_t bytes = 0;
  std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(leveldb::ReadOptions()));
  std::string first = DataKey(start);
  const leveldb::Slice prefix(kDataPrefix.data(), kDataPrefix.size());
  it->Seek(first);
  if (!start.empty() && it->Valid() && it->key() == leveldb::Slice(first)) it->Next();
  for (; it->Valid() && it->key().starts_with(prefix); it->Next()) {
    std::string_view key(it->key().data() + prefix.size(), it->key().size() - prefix.size());
    if (out.entries.size() >= limit || bytes >= soft_bytes) {
      out.more = true;
      break;
    }
    if (accept && !accept(key)) continue;
    auto r = DecodeRecord(std::string_view(it->value().data(), it->value().size()));
    if (!r.ok()) return Status::Corruption("dht store record of key:", std::string(key));
    if (r->tombstone && !include_tombstones) continue;
    bytes += 2 + key.size() + kRecordHeadLen + r->value.size();
    out.entries.emplace_back(std::string(key), std::move(*r));
  }
  if (!it->status().ok()) return Status::IOError("dht store scan:", it->status().ToString());
  return out;
}

Result<std::vector<std::string>> Store::LoadNodes() {
  std::vector<std::string> nodes;
  std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(leveldb::ReadOptions()));
  const leveldb::Slice prefix(kNodePrefix.data(), kNodePrefix.size());
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    nodes.emplace_back(it->key().data() + prefix.size(), it->key().size() - prefix.size());
  }
  if (!it->status().ok()) return Status::IOError("dht store membership:", it->status().ToString());
  return nodes;
}

Status Store::AddNode(const std::string& node) {
  leveldb::WriteOptions wo;
  wo.sync = true;  // membership changes are rare and must survive a crash
  leveldb::Status s = db_->Put(wo, std::string(kNodePrefix) + node, leveldb::Slice());
  if (!s.ok()) return Status::IOError("dht store membership write:", s.ToString());
  return Status::OK();
}

}  // namespace depot::dht
