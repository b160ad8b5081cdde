#include "storage/dedup.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <xxhash.h>
// The runtime-dispatched XXH3 (AVX2 where the CPU has it): about 1.5x the default's speed.
#include <xxh_x86dispatch.h>

#include "common/base/daemon.h"
#include "common/base/fs.h"
#include "common/base/hash.h"
#include "common/base/logging.h"
#include "common/proto/protocol.h"
#include "dht/dht_client.h"
#include "storage/disk_executor.h"
#include "storage/storage_server.h"
#include "storage/store_path.h"

namespace depot::storage {
namespace {

constexpr size_t kCompareChunk = 256 * 1024;
// After a dht failure, uploads skip the dht for this long (each would wait for the timeout).
// Short: a node that restarted is used again at once.
constexpr int64_t kDownPauseNs = 500'000'000;

// The test hook's fixed fingerprint, read once.
const std::string& FixedFingerprint() {
  static const std::string fixed = [] {
    const char* v = std::getenv("DEPOT_DEDUP_FIXED_FINGERPRINT");
    std::string out;
    if (v == nullptr || std::strlen(v) != 32) return out;
    for (int i = 0; i < 16; ++i) {
      unsigned x = 0;
      if (std::sscanf(v + 2 * i, "%2x", &x) != 1) return std::string();
      out.push_back(static_cast<char>(x));
    }
    return out;
  }();
  return fixed;
}

bool Exists(const std::string& path, struct stat* st) { return lstat(path.c_str(), st) == 0; }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Fingerprinter

Fingerprinter::Fingerprinter() : state_(XXH3_createState()) {
  XXH3_128bits_reset(static_cast<XXH3_state_t*>(state_));
}

Fingerprinter::~Fingerprinter() { XXH3_freeState(static_cast<XXH3_state_t*>(state_)); }

void Fingerprinter::Update(const void* data, size_t len) {
  XXH3_128bits_update(static_cast<XXH3_state_t*>(state_), data, len);
}

std::string Fingerprinter::Digest() const {
  if (!FixedFingerprint().empty()) return FixedFingerprint();
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, XXH3_128bits_digest(static_cast<XXH3_state_t*>(state_)));
  return std::string(reinterpret_cast<const char*>(c.digest), sizeof c.digest);
}

Result<std::string> Fingerprinter::OfFile(int fd, uint64_t size) {
  Fingerprinter f;
  std::string buf(kCompareChunk, '\0');
  for (uint64_t off = 0; off < size;) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - off));
    if (!PreadFull(fd, buf.data(), n, off)) return Status::IOError("fingerprint: short read");
    f.Update(buf.data(), n);
    off += n;
  }
  return f.Digest();
}

// ---------------------------------------------------------------------------------------------
// DedupRef: content key (24 bytes) + canonical remote name.

std::string DedupRef::Encode() const { return key.Encode() + canonical; }

Result<DedupRef> DedupRef::Decode(const std::string& v) {
  if (v.size() < proto::ContentKey::kEncodedLen ||
      v.size() > proto::ContentKey::kEncodedLen + proto::kMaxRemoteNameLen) {
    return Status::Corruption("dedup index entry: bad length");
  }
  DedupRef r;
  DEPOT_ASSIGN_OR_RETURN(r.key, proto::ContentKey::Decode(std::string_view(v).substr(0, 24)));
  r.canonical = v.substr(proto::ContentKey::kEncodedLen);
  return r;
}

// ---------------------------------------------------------------------------------------------
// Dedup

Dedup::Dedup(StorageServer* s) : s_(s) {
  const StorageConfig& c = s->config();
  auto& reg = s->metrics_registry();
  hits_ = &prometheus::BuildCounter()
               .Name("depot_dedup_hits_total")
               .Help("Uploads stored as a link to content the member already had")
               .Register(reg)
               .Add({});
  misses_ = &prometheus::BuildCounter()
                 .Name("depot_dedup_misses_total")
                 .Help("Uploads of content the group did not have (registered in the dht)")
                 .Register(reg)
                 .Add({});
  saved_ = &prometheus::BuildCounter()
                .Name("depot_dedup_bytes_saved_total")
                .Help("Bytes not written because the content was already stored")
                .Register(reg)
                .Add({});
  collisions_ = &prometheus::BuildCounter()
                     .Name("depot_dedup_collisions_total")
                     .Help("Same fingerprint, different bytes: stored apart")
                     .Register(reg)
                     .Add({});
  skipped_ = &prometheus::BuildCounter()
                  .Name("depot_dedup_skipped_total")
                  .Help("Uploads stored without dedup, by reason (dht_unavailable, ...)")
                  .Register(reg);
  instant_ = &prometheus::BuildCounter()
                  .Name("depot_dedup_instant_uploads_total")
                  .Help("Instant uploads by result (granted, refused, miss)")
                  .Register(reg);
  dht_seconds_ = &prometheus::BuildHistogram()
                      .Name("depot_dht_request_seconds")
                      .Help("Latency of dht calls made by this storage server, by op")
                      .Register(reg);
  dht_errors_ = &prometheus::BuildCounter()
                     .Name("depot_dht_errors_total")
                     .Help("dht calls that failed (node down, timeout), by op")
                     .Register(reg);
  if (!c.dedup) return;
  dht::DhtClientOptions o;
  o.seeds = c.dht_servers;
  o.secret = c.cluster_secret;
  o.replicas = c.dht_replicas;
  o.timeout_ms = c.dht_timeout_ms;
  auto* secs = dht_seconds_;
  auto* errs = dht_errors_;
  o.observer = [secs, errs](const char* op, const std::string&, double seconds, bool ok) {
    static const prometheus::Histogram::BucketBoundaries kBuckets{
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1, 5};
    secs->Add({{"op", op}}, kBuckets).Observe(seconds);
    if (!ok) errs->Add({{"op", op}}).Increment();
  };
  client_ = std::make_unique<dht::DhtClient>(std::move(o));
  pool_ = std::make_unique<DiskExecutor>("dedup", c.dedup_threads);
}

Dedup::~Dedup() = default;

bool Dedup::Eligible(uint64_t size) const {
  return enabled() && size >= s_->config().dedup_min_size;
}

std::string Dedup::DhtKey(const proto::ContentKey& k) const {
  return s_->config().group_name + "/" + k.Encode();
}

bool Dedup::DhtDown() { return MonotonicNanos() < down_until_ns_.load(); }

void Dedup::NoteDhtResult(const Status& s) {
  if (s.code() == StatusCode::kUnavailable || s.code() == StatusCode::kTimedOut) {
    down_until_ns_ = MonotonicNanos() + kDownPauseNs;
  }
}

Dedup::Found Dedup::Find(const proto::ContentKey& k) {
  Found f;
  if (DhtDown()) {
    f.kind = Lookup::kUnavailable;
    return f;
  }
  auto r = client_->Get(DhtKey(k));
  if (!r.ok()) {
    NoteDhtResult(r.status());
    DEPOT_LOG_WARN("dedup: dht lookup failed: {}", r.status().ToString());
    f.kind = Lookup::kUnavailable;
    return f;
  }
  if (!r->has_value()) return f;
  f.kind = Lookup::kHit;
  f.canonical = (*r)->value;
  f.version = (*r)->version;
  f.count = (*r)->count;
  return f;
}

std::mutex& Dedup::KeyLock(const proto::ContentKey& k) {
  return key_locks_[std::hash<std::string>()(k.fp) % key_locks_.size()];
}

std::string Dedup::HiddenPath(StorePath* p, const proto::FileId& canonical) {
  // data/XX/YY/<name> -> dedup/XX/YY/<name>
  return p->FullPath("dedup/" + canonical.RelativePath().substr(5));
}

Result<std::string> Dedup::EnsureHidden(StorePath* p, const proto::FileId& canonical) {
  // Only a normal file's content is fixed for its life: never share an appender, slave or trunk
  // file's inode, whatever a dht record or a peer says.
  if (!canonical.NamePinsContent() || canonical.InTrunk()) {
    return Status::NotFound("not a file whose content can be shared:", canonical.RemoteName());
  }
  std::string hidden = HiddenPath(p, canonical);
  struct stat st;
  if (Exists(hidden, &st)) return hidden;
  std::string data = p->FullPath(canonical.RelativePath());
  if (!Exists(data, &st)) return Status::NotFound("no copy of the canonical file", canonical.RemoteName());
  DEPOT_RETURN_IF_ERROR(MakeDirs(DirName(hidden)));
  if (link(data.c_str(), hidden.c_str()) != 0 && errno != EEXIST) {
    if (errno == ENOENT) return Status::NotFound("canonical file went away", canonical.RemoteName());
    return Status::FromErrno(errno, "link", hidden);
  }
  return hidden;
}

Result<bool> Dedup::SameBytes(int fd, const std::string& path, uint64_t size) {
  int other = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (other < 0) return Status::FromErrno(errno, "open", path);
  struct stat st;
  bool same = fstat(other, &st) == 0 && static_cast<uint64_t>(st.st_size) == size;
  std::string a(kCompareChunk, '\0'), b(kCompareChunk, '\0');
  for (uint64_t off = 0; same && off < size;) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(kCompareChunk, size - off));
    if (!PreadFull(fd, a.data(), n, off) || !PreadFull(other, b.data(), n, off)) {
      close(other);
      return Status::IOError("dedup compare: short read", path);
    }
    same = std::memcmp(a.data(), b.data(), n) == 0;
    off += n;
  }
  close(other);
  return same;
}

Status Dedup::LinkFile(const std::string& from, const std::string& to, bool replace) {
  if (link(from.c_str(), to.c_str()) == 0) return Status::OK();
  if (errno != EEXIST || !replace) {
    return errno == EEXIST ? Status::AlreadyExists("exists", to) : Status::FromErrno(errno, "link", to);
  }
  // Replace in one step: link to a temporary name beside it, then rename over it.
  std::string tmp = to + ".dedup-" + std::to_string(RandomU64() & 0xFFFFFF);
  if (link(from.c_str(), tmp.c_str()) != 0) return Status::FromErrno(errno, "link", tmp);
  if (rename(tmp.c_str(), to.c_str()) != 0) {
    Status s = Status::FromErrno(errno, "rename", to);
    unlink(tmp.c_str());
    return s;
  }
  return Status::OK();
}

Status Dedup::ReplaceWithLink(const std::string& from, const std::string& to) {
  // Link to a temporary name, then exchange it with `to`: fails (ENOENT) when `to` is gone, so a
  // file deleted meanwhile never comes back; the old inode ends under the temporary name.
  std::string tmp = to + ".dedup-" + std::to_string(RandomU64() & 0xFFFFFF);
  if (link(from.c_str(), tmp.c_str()) != 0) return Status::FromErrno(errno, "link", tmp);
  Status s;
  if (renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, to.c_str(), RENAME_EXCHANGE) != 0) {
    s = errno == ENOENT ? Status::NotFound("gone meanwhile:", to) : Status::FromErrno(errno, "rename", to);
  }
  unlink(tmp.c_str());
  return s;
}

Result<dht::Record> Dedup::AddRef(const proto::ContentKey& k, int64_t delta) {
  auto r = client_->Add(DhtKey(k), delta);
  if (!r.ok()) NoteDhtResult(r.status());
  return r;
}

Result<std::string> Dedup::Register(const proto::ContentKey& k, const std::string& name) {
  if (DhtDown()) return Status::Unavailable("dht down");
  for (int attempt = 0; attempt < 4; ++attempt) {
    dht::Record cur;
    auto put = client_->PutIfAbsent(DhtKey(k), name, 1, &cur);
    if (put.ok()) return name;
    if (put.status().code() != StatusCode::kAlreadyExists) {
      NoteDhtResult(put.status());
      return put.status();
    }
    // Registered meanwhile (a concurrent upload of the same content): one more reference.
    auto add = client_->Add(DhtKey(k), 1);
    if (add.ok()) return add->value;
    if (add.status().code() != StatusCode::kNotFound) {
      NoteDhtResult(add.status());
      return add.status();
    }
    // ...and removed again in between: try again.
  }
  return Status::Busy("dedup: the content's record keeps changing");
}

Result<std::string> Dedup::Rehome(const proto::ContentKey& k, const Found& old,
                                  const std::string& name) {
  dht::Record cur;
  auto r = client_->CompareAndSet(DhtKey(k), old.version, name, old.count + 1, &cur);
  if (r.ok()) return name;
  if (r.status().code() == StatusCode::kBusy) {
    // Someone changed it first: count this copy as one more reference to whatever it names now.
    auto add = client_->Add(DhtKey(k), 1);
    if (add.ok()) return add->value;
    if (add.status().code() == StatusCode::kNotFound) return Register(k, name);
    return add.status();
  }
  if (r.status().code() == StatusCode::kNotFound) return Register(k, name);
  NoteDhtResult(r.status());
  return r.status();
}

bool Dedup::BeginUpload(const proto::ContentKey& k, std::function<void()> retry) {
  std::lock_guard<std::mutex> l(uploads_mu_);
  if (stopping_) return false;  // shutting down: the upload is dropped (its connection closes)
  auto [it, first] = uploads_.try_emplace(k.Encode());
  if (!first) it->second.push_back(std::move(retry));
  return first;
}

void Dedup::EndUpload(const proto::ContentKey& k) {
  std::vector<std::function<void()>> waiting;
  std::lock_guard<std::mutex> l(uploads_mu_);
  auto it = uploads_.find(k.Encode());
  if (it == uploads_.end()) return;
  waiting = std::move(it->second);
  uploads_.erase(it);
  // Resumed under the lock (Submit only queues), so that Stop() cannot run in between; once
  // stopping, `waiting` (and the uploads it holds) is simply dropped.
  if (!stopping_) {
    for (auto& fn : waiting) fn();
  }
}

void Dedup::Stop() {
  std::map<std::string, std::vector<std::function<void()>>> dropped;
  {
    std::lock_guard<std::mutex> l(uploads_mu_);
    stopping_ = true;
    dropped.swap(uploads_);
  }
  std::unique_ptr<DiskExecutor> pool;
  {
    std::lock_guard<std::mutex> l(pool_mu_);
    pool.swap(pool_);
  }
  pool.reset();  // runs what is queued (no new turns are given), then joins
}

void Dedup::Submit(std::function<void()> task) {
  std::lock_guard<std::mutex> l(pool_mu_);
  if (pool_) pool_->Submit(std::move(task));
}

Status Dedup::PutStandIn(const proto::ContentKey& k, const std::string& name) {
  return s_->meta().Put("x/" + k.Encode(), name);
}

std::optional<std::string> Dedup::GetStandIn(const proto::ContentKey& k) {
  auto v = s_->meta().Get("x/" + k.Encode());
  if (!v.ok() || !v->has_value()) return std::nullopt;
  return **v;
}

Status Dedup::PutIndex(const std::string& name, const DedupRef& ref) {
  return s_->meta().Put("r/" + name, ref.Encode());
}

Result<std::optional<DedupRef>> Dedup::GetIndex(const std::string& name) {
  DEPOT_ASSIGN_OR_RETURN(auto v, s_->meta().Get("r/" + name));
  if (!v) return std::optional<DedupRef>();
  DEPOT_ASSIGN_OR_RETURN(DedupRef r, DedupRef::Decode(*v));
  return std::optional<DedupRef>(std::move(r));
}

void Dedup::Forget(StorePath* p, const std::string& name, bool release) {
  auto ref = GetIndex(name);
  std::optional<DedupRef> r;
  if (ref.ok() && ref->has_value()) r = **ref;
  if (r) {
    Status st = s_->meta().Delete("r/" + name);
    if (!st.ok()) DEPOT_LOG_WARN("dedup: dropping the index entry of {}: {}", name, st.ToString());
  }
  if (r && release && client_ && !r->canonical.empty()) {
    auto rec = client_->Add(DhtKey(r->key), -1);
    CrashPoint("dedup-delete-after-release");
    if (rec.ok() && rec->count <= 0) {
      Status rm = client_->Remove(DhtKey(r->key), rec->version);
      if (!rm.ok() && rm.code() != StatusCode::kBusy && rm.code() != StatusCode::kNotFound) {
        DEPOT_LOG_WARN("dedup: removing the record of {}: {}", r->key.Hex(), rm.ToString());
      }
    } else if (!rec.ok() && rec.status().code() != StatusCode::kNotFound) {
      NoteDhtResult(rec.status());
      DEPOT_LOG_WARN("dedup: releasing the reference of {} (the repair scan will): {}", name,
                     rec.status().ToString());
    }
  }
  // The hidden links that may have kept this name's content: its canonical file's, and its own
  // (it may be a canonical file or a stand-in itself). Each goes once no name shares it.
  std::vector<std::string> candidates{name};
  if (r && !r->canonical.empty() && r->canonical != name) candidates.push_back(r->canonical);
  for (const std::string& c : candidates) {
    auto cid = proto::ParseRemoteName(s_->config().group_name, c);
    if (!cid.ok() || cid->store_path != p->index()) continue;
    std::string hidden = HiddenPath(p, *cid);
    std::unique_lock<std::mutex> l;
    if (r) l = std::unique_lock<std::mutex>(KeyLock(r->key));
    struct stat st_h;
    if (Exists(hidden, &st_h) && st_h.st_nlink == 1) unlink(hidden.c_str());
  }
}

void Dedup::CountHit(uint64_t bytes) {
  hits_->Increment();
  saved_->Increment(static_cast<double>(bytes));
}
void Dedup::CountMiss() { misses_->Increment(); }
void Dedup::CountCollision() { collisions_->Increment(); }
void Dedup::CountSkipped(const char* reason) { skipped_->Add({{"reason", reason}}).Increment(); }
void Dedup::CountInstant(const char* result) { instant_->Add({{"result", result}}).Increment(); }

// ---------------------------------------------------------------------------------------------
// The repair scan

Result<proto::DedupScanReport> Dedup::Scan(const proto::DedupScanRequest& req) {
  std::lock_guard<std::mutex> scan_lock(scan_mu_);
  proto::DedupScanReport rep;
  const std::string& group = s_->config().group_name;
  struct Entry {
    std::string name;
    StorePath* p = nullptr;
    ino_t ino = 0;
    uint64_t size = 0;
    bool indexed = false;
    std::string canonical;  // from the index
  };
  std::map<std::string, std::vector<Entry>> by_key;  // encoded content key -> files
  std::map<std::string, proto::ContentKey> keys;

  // 1. Every normal file of this member, with its content key (hashed when not indexed).
  for (auto& path : s_->paths()) {
    StorePath* p = path.get();
    std::vector<std::string> names;
    DEPOT_RETURN_IF_ERROR(p->ForEachFile([&](const std::string& n) { names.push_back(n); }));
    for (const std::string& name : names) {
      if (name.find(".dedup-") != std::string::npos) {
        // The temporary name of a link replace; one older than a minute was left by a crash.
        std::string tmp = p->FullPath("data/" + name.substr(4));
        struct stat st;
        if (req.repair && lstat(tmp.c_str(), &st) == 0 && st.st_ctime < UnixSeconds() - 60) {
          unlink(tmp.c_str());
        }
        continue;
      }
      auto id = proto::ParseRemoteName(group, name);
      if (!id.ok() || !id->NamePinsContent() || id->InTrunk()) continue;
      std::string full = p->FullPath(id->RelativePath());
      struct stat st;
      if (!Exists(full, &st) || !S_ISREG(st.st_mode)) continue;
      uint64_t size = static_cast<uint64_t>(st.st_size);
      if (size < s_->config().dedup_min_size) continue;
      rep.files++;
      Entry e{name, p, st.st_ino, size, false, ""};
      proto::ContentKey key;
      auto ref = GetIndex(name);
      if (ref.ok() && ref->has_value() && (*ref)->key.size == size) {
        key = (*ref)->key;
        e.indexed = true;
        e.canonical = (*ref)->canonical;
      } else {
        int fd = open(full.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        auto fp = Fingerprinter::OfFile(fd, size);
        close(fd);
        if (!fp.ok()) continue;
        key.fp = *fp;
        key.size = size;
        rep.fingerprinted++;
        if (req.repair) DEPOT_RETURN_IF_ERROR(PutIndex(name, DedupRef{key, ""}));
      }
      std::string enc = key.Encode();
      keys[enc] = key;
      by_key[enc].push_back(std::move(e));
    }
  }

  // 2. Index entries of files that are gone.
  std::vector<std::string> stale;
  DEPOT_RETURN_IF_ERROR(s_->meta().Scan("r/", [&](const std::string& k, const std::string&) {
    std::string name = k.substr(2);
    auto id = proto::ParseRemoteName(group, name);
    if (!id.ok()) {
      stale.push_back(k);
      return;
    }
    auto p = s_->PathForFile(*id);
    struct stat st;
    if (!p.ok() || !Exists((*p)->FullPath(id->RelativePath()), &st)) stale.push_back(k);
  }));
  rep.stale_entries += stale.size();
  if (req.repair) {
    for (const std::string& k : stale) DEPOT_RETURN_IF_ERROR(s_->meta().Delete(k));
  }

  // 3. Each content: its canonical copy, the copies merged into it, its reference count.
  bool dht = client_ != nullptr;
  for (auto& [enc, entries] : by_key) {
    const proto::ContentKey& key = keys[enc];
    rep.contents++;
    Found f;
    if (dht) {
      auto r = client_->Get(DhtKey(key));
      if (!r.ok()) {
        rep.dht_ok = false;
        dht = false;
      } else if (r->has_value()) {
        f.kind = Lookup::kHit;
        f.canonical = (*r)->value;
        f.version = (*r)->version;
        f.count = (*r)->count;
      }
    }
    std::lock_guard<std::mutex> l(KeyLock(key));
    // The canonical file: the record's when this member has a copy of it, else (the member
    // that reconciles) one of the files here.
    std::string canonical;
    StorePath* cp = nullptr;
    std::string hidden;
    auto try_canonical = [&](const std::string& c) -> bool {
      auto cid = proto::ParseRemoteName(group, c);
      if (!cid.ok()) return false;
      auto p = s_->PathForFile(*cid);
      if (!p.ok()) return false;
      if (req.repair) {
        auto h = EnsureHidden(*p, *cid);
        if (!h.ok()) return false;
        hidden = *h;
      } else {
        struct stat st;
        hidden = HiddenPath(*p, *cid);
        if (!Exists(hidden, &st)) hidden = (*p)->FullPath(cid->RelativePath());
        if (!Exists(hidden, &st)) return false;
      }
      canonical = c;
      cp = *p;
      return true;
    };
    bool have = f.kind == Lookup::kHit && try_canonical(f.canonical);
    if (!have) {
      if (f.kind == Lookup::kHit && !req.reconcile) continue;  // the reconciling member decides
      if (!dht && !req.reconcile) continue;
      for (const Entry& e : entries) {
        if (try_canonical(e.name)) break;
      }
      if (canonical.empty()) continue;
    }
    struct stat hst;
    if (stat(hidden.c_str(), &hst) != 0) continue;
    int64_t n = 0;
    uint64_t linked = 0;
    for (const Entry& e : entries) {
      bool same = e.ino == hst.st_ino;
      if (!same) {
        std::string full = e.p->FullPath(proto::ParseRemoteName(group, e.name)->RelativePath());
        int fd = open(full.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        auto eq = SameBytes(fd, hidden, key.size);
        close(fd);
        if (!eq.ok()) continue;
        if (!*eq) {
          // Same fingerprint, other bytes: never shared, and no longer indexed under this key.
          rep.collisions++;
          if (req.repair) (void)s_->meta().Delete("r/" + e.name);
          continue;
        }
        if (e.p == cp) {
          rep.merged++;
          if (req.repair) {
            Status ls = ReplaceWithLink(hidden, full);
            if (!ls.ok()) {
              DEPOT_LOG_WARN("dedup scan: linking {}: {}", e.name, ls.ToString());
            } else {
              same = true;
            }
          }
        }
      }
      ++n;
      if (same) ++linked;
      if (req.repair && (!e.indexed || e.canonical != canonical)) {
        DEPOT_RETURN_IF_ERROR(PutIndex(e.name, DedupRef{key, canonical}));
      }
    }
    if (linked > 1) rep.bytes_saved += (linked - 1) * key.size;
    if (!req.reconcile || !dht || n == 0) continue;
    if (f.kind != Lookup::kHit) {
      rep.registered++;
      if (req.repair) {
        dht::Record cur;
        auto put = client_->PutIfAbsent(DhtKey(key), canonical, n, &cur);
        if (!put.ok() && put.status().code() == StatusCode::kAlreadyExists) {
          (void)client_->CompareAndSet(DhtKey(key), cur.version, canonical, n);
        }
      }
    } else if (f.canonical != canonical || f.count != n) {
      rep.refs_fixed++;
      if (req.repair) {
        auto cas = client_->CompareAndSet(DhtKey(key), f.version, canonical, n);
        if (!cas.ok()) DEPOT_LOG_WARN("dedup scan: fixing {}: {}", key.Hex(), cas.status().ToString());
      }
    }
  }

  // 4. The group's records of contents no file has any more (the reconciling member).
  if (req.reconcile && dht) {
    auto all = client_->ScanPrefix(group + "/");
    if (!all.ok()) {
      rep.dht_ok = false;
    } else {
      for (const auto& [k, rec] : *all) {
        std::string enc = k.substr(group.size() + 1);
        if (by_key.count(enc)) continue;
        rep.records_removed++;
        if (req.repair) (void)client_->Remove(k, rec.version);
      }
    }
  }

  // 5. Hidden links no file shares any more.
  for (auto& path : s_->paths()) {
    std::string root = path->FullPath("dedup");
    for (int d1 = 0; d1 < 256; ++d1) {
      char top[8];
      std::snprintf(top, sizeof top, "/%02X", d1);
      if (access((root + top).c_str(), F_OK) != 0) continue;
      for (int d2 = 0; d2 < 256; ++d2) {
        char sub[8];
        std::snprintf(sub, sizeof sub, "/%02X", d2);
        std::string dir = root + top + sub;
        DIR* d = opendir(dir.c_str());
        if (d == nullptr) continue;
        while (dirent* de = readdir(d)) {
          if (de->d_name[0] == '.') continue;
          std::string full = dir + "/" + de->d_name;
          struct stat st;
          if (lstat(full.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1) {
            rep.stale_entries++;
            if (req.repair) unlink(full.c_str());
          }
        }
        closedir(d);
      }
    }
  }
  return rep;
}

}  // namespace depot::storage
