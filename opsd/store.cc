#include "opsd/store.h"

#include <leveldb/db.h>
#include <leveldb/write_batch.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>

namespace depot::opsd {

namespace {

std::string IdKey(const std::string& collection, int64_t id) {
  char buf[32];
  snprintf(buf, sizeof buf, "%012lld", static_cast<long long>(id));
  return "r/" + collection + "/" + buf;
}

}  // namespace

// ---- Collection ----

Collection::Collection(Store* store, std::string name, std::vector<std::string> unique,
                       std::vector<std::string> folded)
    : store_(store), name_(std::move(name)), unique_(std::move(unique)), folded_(std::move(folded)) {}

std::string Collection::Fold(const std::string& field, const std::string& v) const {
  if (std::find(folded_.begin(), folded_.end(), field) == folded_.end()) return v;
  std::string out = v;
  for (char& ch : out) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return out;
}

std::string Collection::Key(int64_t id) const { return IdKey(name_, id); }

Doc Collection::Get(int64_t id) const {
  std::shared_lock l(mu_);
  auto it = docs_.find(id);
  return it == docs_.end() ? nullptr : it->second;
}

Doc Collection::FindUnique(const std::string& field, const std::string& value) const {
  std::shared_lock l(mu_);
  auto f = index_.find(field);
  if (f == index_.end()) return nullptr;
  auto it = f->second.find(Fold(field, value));
  if (it == f->second.end()) return nullptr;
  auto d = docs_.find(it->second);
  return d == docs_.end() ? nullptr : d->second;
}

std::vector<Doc> Collection::All() const {
  std::shared_lock l(mu_);
  std::vector<Doc> out;
  out.reserve(docs_.size());
  for (const auto& [id, d] : docs_) out.push_back(d);
  return out;
}

std::shared_ptr<const std::vector<Doc>> Collection::Sorted(const std::string& field,
                                                          bool desc) const {
  std::string key = (desc ? "-" : "+") + field;
  std::vector<Doc> docs;
  uint64_t gen = 0;
  {
    std::lock_guard<std::mutex> l(sort_mu_);
    std::shared_lock r(mu_);
    auto it = sorted_.find(key);
    if (it != sorted_.end() && it->second.gen == gen_) return it->second.docs;
    gen = gen_;
    docs.reserve(docs_.size());
    for (const auto& [id, d] : docs_) docs.push_back(d);
  }
  if (field != "id" || desc) SortDocs(&docs, field, desc);
  auto out = std::make_shared<const std::vector<Doc>>(std::move(docs));
  std::lock_guard<std::mutex> l(sort_mu_);
  auto& slot = sorted_[key];
  if (slot.docs == nullptr || slot.gen <= gen) slot = SortCache{gen, out};
  return out;
}

void SortDocs(std::vector<Doc>* docs, const std::string& field, bool desc) {
  static const json kNull;
  // Numbers compare as numbers whatever their JSON kind: a value set in this process is a signed
  // integer, the same value read back from LevelDB an unsigned one.
  auto less = [](const json& a, const json& b) {
    if (a.is_null() != b.is_null()) return a.is_null();
    if (a.is_number() && b.is_number()) {
      if (a.is_number_float() || b.is_number_float()) return a.get<double>() < b.get<double>();
      auto huge = [](const json& v) {
        return v.is_number_unsigned() && v.get<uint64_t>() > uint64_t{INT64_MAX};
      };
      if (huge(a) || huge(b)) return huge(b) && (!huge(a) || a.get<uint64_t>() < b.get<uint64_t>());
      return a.get<int64_t>() < b.get<int64_t>();
    }
    if (a.type() != b.type()) return a.type() < b.type();
    return a < b;
  };
  std::vector<std::pair<const json*, size_t>> keys;
  keys.reserve(docs->size());
  for (size_t i = 0; i < docs->size(); ++i) {
    auto it = (*docs)[i]->find(field);
    keys.emplace_back(it == (*docs)[i]->end() ? &kNull : &*it, i);
  }
  std::stable_sort(keys.begin(), keys.end(), [&](const auto& a, const auto& b) {
    return desc ? less(*b.first, *a.first) : less(*a.first, *b.first);
  });
  std::vector<Doc> out;
  out.reserve(docs->size());
  for (const auto& k : keys) out.push_back((*docs)[k.second]);
  *docs = std::move(out);
}

size_t Collection::size() const {
  std::shared_lock l(mu_);
  return docs_.size();
}

// ---- Store ----

Result<std::unique_ptr<Store>> Store::Open(const std::string& dir, bool durable) {
  leveldb::Options options;
  options.create_if_missing = true;
  options.paranoid_checks = true;
  leveldb::DB* db = nullptr;
  leveldb::Status s = leveldb::DB::Open(options, dir, &db);
  if (!s.ok()) {
    if (s.IsCorruption()) return Status::Corruption("open store " + dir + ":", s.ToString());
    return Status::IOError("open store " + dir + ":", s.ToString());
  }
  std::unique_ptr<Store> store(new Store());
  store->db_ = db;
  store->durable_ = durable;
  // Every sequence (record ids, audit event ids) continues where it stopped.
  Status bad;
  DEPOT_RETURN_IF_ERROR(store->ScanForward("seq/", [&](const std::string& key,
                                                       const std::string& value) {
    char* end = nullptr;
    long long n = strtoll(value.c_str(), &end, 10);
    if (value.empty() || *end != '\0' || n < 0) {
      bad = Status::Corruption("bad sequence", key);
      return false;
    }
    store->seqs_[key.substr(4)] = n;
    return true;
  }));
  DEPOT_RETURN_IF_ERROR(bad);
  return store;
}

Store::~Store() {
  collections_.clear();
  delete db_;
}

Result<Collection*> Store::AddCollection(const std::string& name, std::vector<std::string> unique,
                                         std::vector<std::string> folded) {
  auto c = std::make_unique<Collection>(this, name, std::move(unique), std::move(folded));
  std::string prefix = "r/" + name + "/";
  Status bad;
  DEPOT_RETURN_IF_ERROR(ScanForward(prefix, [&](const std::string& key, const std::string& value) {
    json doc = json::parse(value, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded() || !doc.is_object() || !doc.contains("id") ||
        !doc["id"].is_number_integer()) {
      bad = Status::Corruption("unreadable record", key);
      return false;
    }
    int64_t id = doc["id"].get<int64_t>();
    auto d = std::make_shared<const json>(std::move(doc));
    for (const auto& f : c->unique_) {
      auto it = d->find(f);
      if (it != d->end() && it->is_string() && !it->get<std::string>().empty()) {
        c->index_[f][c->Fold(f, it->get<std::string>())] = id;
      }
    }
    c->docs_[id] = std::move(d);
    return true;
  }));
  DEPOT_RETURN_IF_ERROR(bad);
  {
    std::lock_guard<std::mutex> l(write_mu_);
    // A sequence never goes back below a stored id, even if seq/ was lost.
    if (!c->docs_.empty()) seqs_[name] = std::max(seqs_[name], c->docs_.rbegin()->first);
  }
  Collection* raw = c.get();
  collections_[name] = std::move(c);
  return raw;
}

Collection* Store::collection(const std::string& name) const {
  auto it = collections_.find(name);
  return it == collections_.end() ? nullptr : it->second.get();
}

Result<std::optional<std::string>> Store::GetRaw(const std::string& key) const {
  std::string v;
  leveldb::Status s = db_->Get(leveldb::ReadOptions(), key, &v);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return Status::IOError("read " + key + ":", s.ToString());
  return std::optional<std::string>(std::move(v));
}

Status Store::ScanForward(
    const std::string& prefix,
    const std::function<bool(const std::string&, const std::string&)>& fn) const {
  std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(leveldb::ReadOptions()));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    if (!fn(it->key().ToString(), it->value().ToString())) break;
  }
  if (!it->status().ok()) return Status::IOError("scan " + prefix + ":", it->status().ToString());
  return Status::OK();
}

Status Store::ScanBackward(
    const std::string& prefix, const std::string& before,
    const std::function<bool(const std::string&, const std::string&)>& fn) const {
  std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(leveldb::ReadOptions()));
  // Start at the last key below `before` (or below the end of the prefix range).
  std::string limit = before.empty() ? prefix + "\xff" : before;
  it->Seek(limit);
  if (it->Valid()) {
    it->Prev();
  } else {
    it->SeekToLast();
  }
  for (; it->Valid(); it->Prev()) {
    if (!it->key().starts_with(prefix)) {
      if (it->key().compare(prefix) < 0) break;
      continue;
    }
    if (!fn(it->key().ToString(), it->value().ToString())) break;
  }
  if (!it->status().ok()) return Status::IOError("scan " + prefix + ":", it->status().ToString());
  return Status::OK();
}

// ---- Txn ----

Txn::Txn(Store* store)
    : store_(store), lock_(store->write_mu_), batch_(std::make_unique<leveldb::WriteBatch>()) {}

Txn::~Txn() = default;

int64_t Txn::NextId(const std::string& seq) {
  auto it = seqs_.find(seq);
  int64_t next = (it != seqs_.end() ? it->second : store_->seqs_[seq]) + 1;
  seqs_[seq] = next;
  batch_->Put("seq/" + seq, std::to_string(next));
  return next;
}

Doc Txn::Get(Collection* c, int64_t id) const {
  for (auto it = changes_.rbegin(); it != changes_.rend(); ++it) {
    if (it->c == c && it->id == id) return it->after;
  }
  return c->Get(id);
}

bool Txn::empty() const { return changes_.empty() && seqs_.empty(); }

Status Txn::CheckUnique(Collection* c, int64_t id, const json& doc) const {
  for (const auto& f : c->unique_) {
    auto v = doc.find(f);
    if (v == doc.end() || !v->is_string() || v->get<std::string>().empty()) continue;
    std::string folded = c->Fold(f, v->get<std::string>());
    // Pending changes of this Txn first, then the committed view.
    bool clash = false;
    bool decided = false;
    for (auto it = changes_.rbegin(); it != changes_.rend() && !decided; ++it) {
      if (it->c != c || !it->after || it->id == id) continue;
      auto o = it->after->find(f);
      if (o != it->after->end() && o->is_string() && c->Fold(f, o->get<std::string>()) == folded) {
        clash = true;
        decided = true;
      }
    }
    if (!decided) {
      Doc other = c->FindUnique(f, v->get<std::string>());
      if (other && (*other)["id"].get<int64_t>() != id) {
        // Still that value after this Txn's own changes?
        Doc now = Get(c, (*other)["id"].get<int64_t>());
        auto o = now ? now->find(f) : json::const_iterator();
        clash = now && o != now->end() && o->is_string() && c->Fold(f, o->get<std::string>()) == folded;
      }
    }
    if (clash) {
      return Status::AlreadyExists(c->name() + " with this " + f + " exists:", v->get<std::string>());
    }
  }
  return Status::OK();
}

Result<Doc> Txn::Insert(Collection* c, json doc) {
  int64_t id = doc.contains("id") && doc["id"].is_number_integer() ? doc["id"].get<int64_t>()
                                                                   : NextId(c->name());
  doc["id"] = id;
  doc["version"] = 1;
  int64_t now = UnixSeconds();
  if (!doc.contains("created_at")) doc["created_at"] = now;
  doc["updated_at"] = now;
  if (Get(c, id)) return Status::AlreadyExists(c->name() + " id taken:", std::to_string(id));
  DEPOT_RETURN_IF_ERROR(CheckUnique(c, id, doc));
  auto d = std::make_shared<const json>(std::move(doc));
  batch_->Put(c->Key(id), d->dump(-1, ' ', false, json::error_handler_t::replace));
  changes_.push_back({c, id, nullptr, d});
  return d;
}

Result<Doc> Txn::Replace(Collection* c, int64_t id, json doc,
                         std::optional<int64_t> expect_version) {
  Doc before = Get(c, id);
  if (!before) return Status::NotFound(c->name() + " not found:", std::to_string(id));
  int64_t version = (*before)["version"].get<int64_t>();
  if (expect_version && *expect_version != version) {
    return Status::Busy("version mismatch: stored " + std::to_string(version) + ", given",
                        std::to_string(*expect_version));
  }
  doc["id"] = id;
  doc["version"] = version + 1;
  doc["created_at"] = (*before)["created_at"];
  doc["updated_at"] = UnixSeconds();
  DEPOT_RETURN_IF_ERROR(CheckUnique(c, id, doc));
  auto d = std::make_shared<const json>(std::move(doc));
  batch_->Put(c->Key(id), d->dump(-1, ' ', false, json::error_handler_t::replace));
  changes_.push_back({c, id, before, d});
  return d;
}

Result<Doc> Txn::ReplaceQuietly(Collection* c, int64_t id, json doc) {
  Doc before = Get(c, id);
  if (!before) return Status::NotFound(c->name() + " not found:", std::to_string(id));
  doc["id"] = id;
  doc["version"] = (*before)["version"];
  doc["created_at"] = (*before)["created_at"];
  doc["updated_at"] = (*before)["updated_at"];
  DEPOT_RETURN_IF_ERROR(CheckUnique(c, id, doc));
  auto d = std::make_shared<const json>(std::move(doc));
  batch_->Put(c->Key(id), d->dump(-1, ' ', false, json::error_handler_t::replace));
  changes_.push_back({c, id, before, d});
  return d;
}

Status Txn::Remove(Collection* c, int64_t id, std::optional<int64_t> expect_version) {
  Doc before = Get(c, id);
  if (!before) return Status::NotFound(c->name() + " not found:", std::to_string(id));
  int64_t version = (*before)["version"].get<int64_t>();
  if (expect_version && *expect_version != version) {
    return Status::Busy("version mismatch: stored " + std::to_string(version) + ", given",
                        std::to_string(*expect_version));
  }
  batch_->Delete(c->Key(id));
  changes_.push_back({c, id, before, nullptr});
  return Status::OK();
}

void Txn::PutRaw(const std::string& key, const std::string& value) { batch_->Put(key, value); }

Status Txn::Commit() {
  if (committed_) return Status::Internal("transaction committed twice");
  committed_ = true;
  leveldb::WriteOptions wo;
  wo.sync = store_->durable_;
  leveldb::Status s = store_->db_->Write(wo, batch_.get());
  if (!s.ok()) return Status::IOError("store write:", s.ToString());
  for (const auto& [name, v] : seqs_) store_->seqs_[name] = std::max(store_->seqs_[name], v);
  for (const auto& ch : changes_) {
    Collection* c = ch.c;
    std::unique_lock l(c->mu_);
    for (const auto& f : c->unique_) {
      auto& idx = c->index_[f];
      if (ch.before) {
        auto o = ch.before->find(f);
        if (o != ch.before->end() && o->is_string()) {
          auto it = idx.find(c->Fold(f, o->get<std::string>()));
          if (it != idx.end() && it->second == ch.id) idx.erase(it);
        }
      }
      if (ch.after) {
        auto o = ch.after->find(f);
        if (o != ch.after->end() && o->is_string() && !o->get<std::string>().empty()) {
          idx[c->Fold(f, o->get<std::string>())] = ch.id;
        }
      }
    }
    if (ch.after) {
      c->docs_[ch.id] = ch.after;
    } else {
      c->docs_.erase(ch.id);
    }
    ++c->gen_;
  }
  return Status::OK();
}

}  // namespace depot::opsd
