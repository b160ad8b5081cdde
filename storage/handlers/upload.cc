// Upload (11) and upload appender (23): path_index1 + size8 + ext6 + the bytes; upload slave
// (21): master_len8 + size8 + prefix16 + ext6 + master name + the bytes. Reply group16 + remote
// name.
// The body streams in chunks to an unnamed file (O_TMPFILE) in the current write directory (a
// slave: its master's directory), on the store path's writer threads; the CRC32 is computed on
// the way; at the end the file is named data/XX/YY/<name> with linkat and only then acknowledged.
// Normal files are named in a group commit when durable_writes is on (a torn one is found at
// start-up by its CRC32); appender and slave files, whose names do not carry their content's
// CRC32, are synced before they are named.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <mutex>

#include <map>
#include <optional>

#include "common/base/daemon.h"
#include "common/base/fs.h"
#include "common/base/hash.h"
#include "common/base/logging.h"
#include "common/proto/dedup.h"
#include "storage/dedup.h"
#include "storage/handlers/request_head.h"
#include "storage/replicator.h"
#include "storage/storage_server.h"
#include "storage/trunk.h"

namespace depot::storage {
namespace {

using net::ConnectionPtr;
using proto::FrameHeader;

constexpr size_t kUploadPrefix = 1 + 8 + proto::kExtLen;
constexpr size_t kSlavePrefix = 8 + 8 + proto::kPrefixLen + proto::kExtLen;

enum class Kind { kNormal, kAppender, kSlave };


// One upload in progress. Shared between the loop (stream) and the disk threads; mu_ orders the
// disk work of one upload when a path has several writer threads.
class UploadJob : public std::enable_shared_from_this<UploadJob> {
 public:
  UploadJob(StorageServer* server, StorePath* path, uint64_t size, std::string ext, Kind kind)
      : server_(server), path_(path), size_(size), ext_(std::move(ext)), kind_(kind) {}

  // A slave: its name and directory, and its master's file.
  void SetSlave(proto::FileId slave, proto::FileId master) {
    slave_ = std::move(slave);
    master_ = std::move(master);
  }
  ~UploadJob() {
    StorePath::Discard(&file_);
    ReleaseTurn();
  }

  // The decision for this content is made (linked, or stored and registered): the next upload
  // of the same content on this member goes on, as a hit.
  void ReleaseTurn() {
    if (first_.exchange(false)) server_->dedup().EndUpload(key_);
  }

  // The file goes into a trunk slot: its bytes are gathered in memory (at most slot_max_size)
  // and written into the slot at once.
  void SetTrunk() {
    trunk_ = true;
    buf_.reserve(size_);
  }

  Status Write(const std::string& data) {
    std::lock_guard<std::mutex> l(mu_);
    if (aborted_) return Status::Unavailable("upload aborted");
    if (written_ + data.size() > size_) return Status::InvalidArgument("body longer than size");
    if (trunk_) {
      buf_ += data;
    } else {
      DEPOT_RETURN_IF_ERROR(OpenLocked());
      DEPOT_RETURN_IF_ERROR(WriteAll(file_.fd, data.data(), data.size(), "upload"));
    }
    crc_ = Crc32Update(crc_, data.data(), data.size());
    if (fp_) fp_->Update(data.data(), data.size());
    written_ += data.size();
    return Status::OK();
  }

  // Dedup: the upload is fingerprinted while it streams and looked up at its end.
  void SetDedup() { fp_ = std::make_unique<Fingerprinter>(); }

  // Runs on a writer thread after the last chunk.
  void Finish(const ConnectionPtr& conn) {
    std::unique_lock<std::mutex> l(mu_);
    if (trunk_) {
      if (aborted_) return;
      if (written_ != size_) return Fail(conn, Status::InvalidArgument("body shorter than size"));
      l.unlock();
      return PublishTrunk(conn);
    }
    Status s = OpenLocked();  // an empty file has had no Write()
    if (!s.ok()) return Fail(conn, s);
    if (written_ != size_) return Fail(conn, Status::InvalidArgument("body shorter than size"));
    l.unlock();
    if (fp_) return FinishDedup(conn);
    Publish(conn, 0);
  }

  // An instant upload (242/243) that proved it holds the content: a new file ID for content
  // this member has, without a body. Runs on a writer thread.
  void GrantInstant(const ConnectionPtr& conn, const proto::ContentKey& key,
                    const std::string& canonical) {
    Dedup& d = server_->dedup();
    key_ = key;
    found_.canonical = canonical;
    Status q = server_->replicator().CheckQuorumPossible();
    if (!q.ok()) return FailUnlocked(conn, q);
    auto cid = proto::ParseRemoteName(server_->config().group_name, canonical);
    if (!cid.ok()) return FailUnlocked(conn, cid.status());
    std::unique_lock<std::mutex> kl(d.KeyLock(key_));
    auto hidden = d.EnsureHidden(path_, *cid);
    if (!hidden.ok()) return FailUnlocked(conn, hidden.status());
    kl.unlock();
    auto rec = d.AddRef(key_);
    if (!rec.ok()) return FailUnlocked(conn, rec.status());
    kl.lock();
    if (!StillThere(*hidden)) {
      kl.unlock();
      (void)d.AddRef(key_, -1);  // nothing was made: the reference goes again
      return FailUnlocked(conn, Status::NotFound("the content went away meanwhile"));
    }
    d.CountInstant("granted");
    LinkToContent(conn, *hidden, 0, 0, std::move(kl));
  }

  void Abort() {
    std::lock_guard<std::mutex> l(mu_);
    aborted_ = true;
    // While committing, file_ is empty (moved to the commit thread); the commit finishes and the
    // file becomes an orphan nobody was told about, like any upload cut off after its last byte.
    if (!committing_) StorePath::Discard(&file_);
  }

  void FailUnlocked(const ConnectionPtr& conn, const Status& s) {
    std::lock_guard<std::mutex> l(mu_);
    Fail(conn, s);
  }

  // A failure before the last chunk: the rest of the body is read and dropped, then answered.
  void MarkFailed(const Status& s) {
    std::lock_guard<std::mutex> l(mu_);
    failed_ = s;
    StorePath::Discard(&file_);
  }
  bool failed() {
    std::lock_guard<std::mutex> l(mu_);
    return !failed_.ok();
  }
  void ReplyFailure(const ConnectionPtr& conn) {
    std::lock_guard<std::mutex> l(mu_);
    Fail(conn, failed_);
  }

 private:
  Status OpenLocked() {
    if (aborted_) return Status::Unavailable("upload aborted");
    if (file_.fd >= 0) return Status::OK();
    if (kind_ == Kind::kSlave) {
      // FastDFS's statuses: ENOENT without the master, EEXIST when the slave exists.
      struct stat st;
      if (!StorageServer::HasFile(path_, master_)) {
        return Status::NotFound("master file not found:", master_.RemoteName());
      }
      if (stat(path_->FullPath(slave_.RelativePath()).c_str(), &st) == 0) {
        return Status::AlreadyExists("slave file exists:", slave_.RemoteName());
      }
      DEPOT_ASSIGN_OR_RETURN(file_, path_->CreatePendingIn(slave_.dir1, slave_.dir2));
      return Status::OK();
    }
    DEPOT_ASSIGN_OR_RETURN(file_, path_->CreatePending());
    return Status::OK();
  }

  // mu_ held.
  void Fail(const ConnectionPtr& conn, const Status& s) {
    DEPOT_LOG_WARN("upload from {} failed: {}", conn->peer(), s.ToString());
    server_->Count(proto::kCntUpload, false);
    StorePath::Discard(&file_);
    conn->PostReply(proto::StatusToWire(s));
  }

  void Publish(const ConnectionPtr& conn, int attempt) {
    Binlog& binlog = server_->replicator().binlog();
    proto::FileId id;
    uint32_t ctime = 0;
    if (kind_ == Kind::kSlave) {
      id = slave_;
    } else {
      id.group = server_->config().group_name;
      id.store_path = path_->index();
      id.dir1 = file_.dir1;
      id.dir2 = file_.dir2;
      uint64_t r = RandomU64();
      id.fields.source_ip = server_->source_ip();
      // Registered as in progress until its binlog record exists (read-routing watermarks).
      ctime = binlog.BeginCreate();
      id.fields.create_time = ctime;
      id.fields.size_word = proto::MakeSizeWord(size_, kind_ == Kind::kAppender, r);
      id.fields.crc32 = crc_;
      id.name = proto::MakeFileName(id.fields, ext_, RandomU64());
    }
    auto self = shared_from_this();
    // Runs once the name exists (on the commit thread, before its sync, when durable).
    auto named = [self, id, ctime]() -> Status {
      self->registration_used_ = true;  // AppendOwn ends the registration, failed or not
      if (self->reg_ != Reg::kNone) {
        // A provisional index entry before the binlog record: the pusher sends the content key
        // with the file, whatever happens to the registration that follows.
        Status ix = self->server_->dedup().PutIndex(id.RemoteName(), DedupRef{self->key_, ""});
        if (!ix.ok()) DEPOT_LOG_WARN("dedup: indexing {}: {}", id.RemoteName(), ix.ToString());
      }
      auto rec = self->server_->replicator().binlog().AppendOwn(kOpCreate, id.RemoteName(), ctime);
      if (!rec.ok()) return rec.status();
      self->seq_ = rec->seq;
      return Status::OK();
    };
    self->registration_used_ = false;
    auto done = [self, conn, id, attempt, ctime](Status s) {
      if (!s.ok() && !self->registration_used_ && ctime != 0) {
        self->server_->replicator().binlog().AbortCreate(ctime);
      }
      if (s.code() == StatusCode::kAlreadyExists && attempt < 5 && self->kind_ != Kind::kSlave) {
        return self->Publish(conn, attempt + 1);  // astronomically rare name clash: new name
      }
      if (!s.ok()) return self->FailUnlocked(conn, s);
      self->RegisterThenAcknowledge(conn, id);
    };
    if (kind_ != Kind::kNormal) {
      // Synced before it is named (when durable): nothing at start-up could tell a torn
      // appender or slave file from a good one.
      Status s;
      {
        std::lock_guard<std::mutex> l(mu_);
        if (aborted_) {
          if (ctime != 0) server_->replicator().binlog().AbortCreate(ctime);
          return;
        }
        if (path_->durable() && fdatasync(file_.fd) != 0) s = Status::FromErrno(errno, "fdatasync");
        if (s.ok()) s = path_->Publish(&file_, id.name);
      }
      std::string full = path_->FullPath(id.RelativePath());
      if (s.ok() && path_->durable()) s = FsyncDir(DirName(full));
      if (s.ok()) {
        s = named();
        if (s.ok() && path_->durable()) s = server_->replicator().binlog().Sync();
        if (!s.ok()) unlink(full.c_str());
      }
      done(s);
    } else if (path_->durable()) {
      std::lock_guard<std::mutex> l(mu_);
      if (aborted_) {  // the client went away: the pending file was discarded
        server_->replicator().binlog().AbortCreate(ctime);
        return;
      }
      committing_ = true;  // the file now belongs to the commit thread
      path_->Commit(std::move(file_), id.name, [self, done](Status s, StorePath::PendingFile f) {
        {
          std::lock_guard<std::mutex> l(self->mu_);
          self->committing_ = false;
          self->file_ = std::move(f);
        }
        done(s);
      }, named);
    } else {
      Status s;
      {
        std::lock_guard<std::mutex> l(mu_);
        if (aborted_) {
          server_->replicator().binlog().AbortCreate(ctime);
          return;
        }
        s = path_->Publish(&file_, id.name);
      }
      if (s.ok()) {
        s = named();
        if (!s.ok()) unlink(path_->FullPath(id.RelativePath()).c_str());
      }
      done(s);
    }
  }

  // The upload's content key is known: a dht hit becomes a link to the stored copy (after a
  // byte comparison), anything else a file of its own, registered after it is named.
  void FinishDedup(const ConnectionPtr& conn) {
    Dedup& d = server_->dedup();
    key_.fp = fp_->Digest();
    key_.size = size_;
    auto self = shared_from_this();
    if (!d.BeginUpload(key_, [self, conn] {
          self->server_->dedup().Submit([self, conn] { self->FinishDedup(conn); });
        })) {
      return;  // another upload of this content is deciding; this one goes after it
    }
    first_ = true;
    d.Submit([self, conn] { self->DecideDedup(conn); });
  }

  // On a dedup thread: the dht lookup and what follows from it.
  void DecideDedup(const ConnectionPtr& conn) {
    Dedup& d = server_->dedup();
    found_ = d.Find(key_);
    if (found_.kind == Dedup::Lookup::kUnavailable) {
      d.CountSkipped("dht_unavailable");
      reg_ = Reg::kUnregistered;
    } else if (found_.kind == Dedup::Lookup::kMiss) {
      reg_ = Reg::kRegister;
    } else if (TryLink(conn)) {
      return;
    }
    Publish(conn, 0);
  }

  // A dht hit. True when the upload was answered here (linked, or failed); false: store it
  // whole (reg_ says how to register it).
  bool TryLink(const ConnectionPtr& conn) {
    Dedup& d = server_->dedup();
    auto cid = proto::ParseRemoteName(server_->config().group_name, found_.canonical);
    if (!cid.ok() || cid->store_path != path_->index()) {
      d.CountSkipped("other_store_path");  // a hard link cannot cross filesystems
      reg_ = Reg::kExtra;
      return false;
    }
    std::unique_lock<std::mutex> kl(d.KeyLock(key_));
    auto hidden = d.EnsureHidden(path_, *cid);
    if (!hidden.ok()) {
      // No copy of the canonical file here (not replicated yet, or deleted). A stand-in of ours
      // with this content is shared instead; else the upload is stored whole and counted, and
      // becomes the stand-in (the scan merges them later). A canonical file deleted here is
      // replaced by this one in the record.
      auto t = server_->meta().Get("t/" + found_.canonical);
      bool gone = t.ok() && t->has_value();
      auto stand_in = gone ? std::nullopt : d.GetStandIn(key_);
      auto sid = stand_in ? proto::ParseRemoteName(server_->config().group_name, *stand_in)
                          : Result<proto::FileId>(Status::NotFound(""));
      if (sid.ok() && sid->store_path == path_->index()) hidden = d.EnsureHidden(path_, *sid);
      if (!hidden.ok()) {
        reg_ = gone ? Reg::kRehome : Reg::kExtra;
        d.CountSkipped("no_local_copy");
        return false;
      }
      found_.canonical = *stand_in;
    }
    // The comparison and the dht call run without the content's lock, and the next upload of
    // this content takes its turn now: it will find the same copy here (the turn only keeps
    // uploads without a copy from storing one each). The hidden link is checked again under the
    // lock before the new name is made.
    kl.unlock();
    ReleaseTurn();
    Result<bool> same = false;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (aborted_) return true;
      same = Dedup::SameBytes(file_.fd, *hidden, size_);
    }
    if (!same.ok() || !*same) {
      if (same.ok()) {
        d.CountCollision();
        DEPOT_LOG_WARN("dedup: fingerprint {} collides with {}: stored apart", key_.Hex(),
                       found_.canonical);
      } else {
        DEPOT_LOG_WARN("dedup: comparing with {}: {}", *hidden, same.status().ToString());
      }
      reg_ = Reg::kNone;  // never shared, never indexed under that key
      return false;
    }
    auto rec = d.AddRef(key_);
    if (!rec.ok()) {
      reg_ = rec.status().code() == StatusCode::kNotFound ? Reg::kRegister : Reg::kUnregistered;
      if (reg_ == Reg::kUnregistered) d.CountSkipped("dht_unavailable");
      return false;
    }
    CrashPoint("dedup-hit-after-ref");
    kl.lock();
    if (!StillThere(*hidden)) {
      // Its last name went meanwhile and took the hidden link with it: this upload is stored
      // whole, already counted.
      kl.unlock();
      reg_ = Reg::kCounted;
      return false;
    }
    LinkToContent(conn, *hidden, 0, 0, std::move(kl));
    return true;
  }

  // The hidden link `hidden` exists, or was made again from the canonical file (same content).
  bool StillThere(const std::string& hidden) {
    struct stat st;
    if (stat(hidden.c_str(), &st) == 0) return true;
    auto cid = proto::ParseRemoteName(server_->config().group_name, found_.canonical);
    return cid.ok() && server_->dedup().EnsureHidden(path_, *cid).ok();
  }

  // The reference is counted: names a new file ID as one more link to `hidden`, records it,
  // and acknowledges it. A crash before the binlog record leaves an extra reference (the scan
  // repairs it) or an unannounced name, never a file ID without its content.
  void LinkToContent(const ConnectionPtr& conn, const std::string& hidden, int attempt,
                     uint32_t ctime_in, std::unique_lock<std::mutex> kl) {
    Dedup& d = server_->dedup();
    Binlog& binlog = server_->replicator().binlog();
    proto::FileId id;
    id.group = server_->config().group_name;
    id.store_path = path_->index();
    // An instant upload has no pending file: it takes the canonical file's directory and CRC32
    // (the content's).
    auto canonical = proto::ParseRemoteName(id.group, found_.canonical);
    bool instant = false;
    {
      std::lock_guard<std::mutex> l(mu_);
      instant = file_.fd < 0;
      if (!instant) {
        id.dir1 = file_.dir1;
        id.dir2 = file_.dir2;
      } else {
        id.dir1 = canonical.ok() ? canonical->dir1 : 0;
        id.dir2 = canonical.ok() ? canonical->dir2 : 0;
      }
    }
    uint32_t ctime = ctime_in != 0 ? ctime_in : binlog.BeginCreate();
    id.fields.source_ip = server_->source_ip();
    id.fields.create_time = ctime;
    id.fields.size_word = proto::MakeSizeWord(size_, false, RandomU64());
    id.fields.crc32 = crc_;
    if (instant && canonical.ok()) id.fields.crc32 = canonical->fields.crc32;
    id.name = proto::MakeFileName(id.fields, ext_, RandomU64());
    std::string name = id.RemoteName();
    std::string full = path_->FullPath(id.RelativePath());
    Status s = d.PutIndex(name, DedupRef{key_, found_.canonical});
    CrashPoint("dedup-hit-after-index");
    if (s.ok()) s = MakeDirs(DirName(full));
    if (s.ok()) s = Dedup::LinkFile(hidden, full, /*replace=*/false);
    if (s.code() == StatusCode::kAlreadyExists && attempt < 5) {
      (void)server_->meta().Delete("r/" + name);
      return LinkToContent(conn, hidden, attempt + 1, ctime, std::move(kl));  // a name clash
    }
    kl.unlock();
    if (s.ok()) ReleaseTurn();
    if (s.ok() && path_->durable()) s = FsyncDir(DirName(full));
    CrashPoint("dedup-hit-after-link");
    bool appended = false;
    if (s.ok()) {
      appended = true;  // AppendOwn ends the BeginCreate registration, failed or not
      auto rec = binlog.AppendOwn(kOpCreate, name, ctime);
      if (rec.ok()) {
        seq_ = rec->seq;
      } else {
        s = rec.status();
      }
    }
    if (s.ok() && path_->durable()) s = binlog.Sync();
    CrashPoint("dedup-hit-after-binlog");
    if (!s.ok()) {
      if (!appended) binlog.AbortCreate(ctime);
      unlink(full.c_str());
      d.Forget(path_, name, /*release=*/true);
      return FailUnlocked(conn, s);
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      StorePath::Discard(&file_);
    }
    d.CountHit(size_);
    Acknowledge(conn, id);
  }

  // A file stored whole under dedup: its reference goes to the dht (reg_), then the index
  // entry, then the acknowledgement. Runs on a writer thread: the dht is a network call.
  void RegisterThenAcknowledge(const ConnectionPtr& conn, const proto::FileId& id) {
    if (reg_ == Reg::kNone) return Acknowledge(conn, id);
    auto self = shared_from_this();
    server_->dedup().Submit([self, conn, id] {
      Dedup& d = self->server_->dedup();
      std::string name = id.RemoteName();
      std::string canonical;
      Result<std::string> r = std::string();
      switch (self->reg_) {
        case Reg::kNone:
        case Reg::kUnregistered:
          break;
        case Reg::kCounted:
          r = self->found_.canonical;  // counted before the hidden link went
          break;
        case Reg::kRegister:
          r = d.Register(self->key_, name);
          if (r.ok() && *r == name) d.CountMiss();
          break;
        case Reg::kExtra: {
          auto add = d.AddRef(self->key_);
          r = add.ok() ? Result<std::string>(add->value)
              : add.status().code() == StatusCode::kNotFound ? d.Register(self->key_, name)
                                                             : Result<std::string>(add.status());
          break;
        }
        case Reg::kRehome:
          r = d.Rehome(self->key_, self->found_, name);
          break;
      }
      if (r.ok()) {
        canonical = *r;
      } else {
        d.CountSkipped("dht_unavailable");
        DEPOT_LOG_WARN("dedup: registering {} (the repair scan will): {}", name, r.status().ToString());
      }
      CrashPoint("dedup-miss-after-register");
      if (r.ok() && !canonical.empty() && canonical != name) {
        // Registered meanwhile by an upload elsewhere: this copy is the member's stand-in.
        Status si = d.PutStandIn(self->key_, name);
        if (!si.ok()) DEPOT_LOG_WARN("dedup: stand-in {}: {}", name, si.ToString());
      }
      Status s = d.PutIndex(name, DedupRef{self->key_, canonical});
      if (!s.ok()) DEPOT_LOG_WARN("dedup: indexing {}: {}", name, s.ToString());
      self->ReleaseTurn();
      self->Acknowledge(conn, id);
    });
  }

  // A trunk upload: a slot of this member's trunk files, the file ID naming it, one write of
  // header and content, then (durable) a group commit of the trunk file and the binlog.
  void PublishTrunk(const ConnectionPtr& conn) {
    TrunkStore* trunk = path_->trunk();
    Binlog& binlog = server_->replicator().binlog();
    uint32_t ip = server_->source_ip();
    uint32_t ctime = binlog.BeginCreate();
    auto slot = trunk->Allocate(ip, size_, ctime);
    if (!slot.ok()) {
      binlog.AbortCreate(ctime);
      if (slot.status().code() != StatusCode::kUnavailable) return FailUnlocked(conn, slot.status());
      // No trunk slot now (this member's address changed): a file of its own instead.
      Status s;
      {
        std::lock_guard<std::mutex> l(mu_);
        trunk_ = false;
        s = OpenLocked();
        if (s.ok()) s = WriteAll(file_.fd, buf_.data(), buf_.size(), "upload");
        std::string().swap(buf_);
      }
      if (!s.ok()) return FailUnlocked(conn, s);
      return Publish(conn, 0);
    }
    proto::FileId id;
    id.group = server_->config().group_name;
    id.store_path = path_->index();
    id.trunk = *slot;
    id.dir1 = static_cast<int>(slot->trunk_id & 0xFF);
    id.dir2 = static_cast<int>((slot->trunk_id >> 8) & 0xFF);
    id.fields.source_ip = ip;
    id.fields.create_time = ctime;
    id.fields.size_word = proto::MakeTrunkSizeWord(size_, RandomU64());
    id.fields.crc32 = crc_;
    id.name = proto::EncodeNameFields(id.fields) + proto::EncodeTrunkInfo(*slot) +
              proto::MakeFileName(id.fields, ext_, RandomU64()).substr(proto::kFileNameB64Len);
    Status w = trunk->Write(id, buf_);
    if (!w.ok()) {
      binlog.AbortCreate(ctime);
      trunk->Release(ip, *slot);
      return FailUnlocked(conn, w);
    }
    std::string().swap(buf_);
    auto self = shared_from_this();
    auto named = [self, id, ctime]() -> Status {
      self->registration_used_ = true;
      auto rec = self->server_->replicator().binlog().AppendOwn(kOpCreate, id.RemoteName(), ctime);
      if (!rec.ok()) return rec.status();
      self->seq_ = rec->seq;
      return Status::OK();
    };
    registration_used_ = false;
    auto done = [self, conn, id, ctime](Status s) {
      if (!s.ok()) {
        if (!self->registration_used_) self->server_->replicator().binlog().AbortCreate(ctime);
        (void)self->path_->trunk()->Free(id);
        return self->FailUnlocked(conn, s);
      }
      self->Acknowledge(conn, id);
    };
    if (path_->durable()) {
      trunk->Commit(id, named, done);
    } else {
      done(named());
    }
  }

  // The file is stored and recorded: acknowledged once the write quorum holds it (replication =
  // sync), withdrawn when it cannot.
  void Acknowledge(const ConnectionPtr& conn, const proto::FileId& id) {
    auto self = shared_from_this();
    server_->replicator().AwaitQuorum(seq_, [self, conn, id](Status q) {
      if (!q.ok()) return self->Withdraw(conn, id, q);
      self->server_->Count(proto::kCntUpload, true);
      self->server_->Count(proto::kCntUploadBytes, true, static_cast<int64_t>(self->size_));
      self->server_->TouchSourceUpdate();
      std::string out;
      proto::AppendFixed(&out, id.group, proto::kGroupNameLen);
      out += id.RemoteName();
      conn->PostReply(0, std::move(out));
    });
  }

  // The write quorum was not reached: the upload fails and its file is deleted again (a delete
  // record follows the create, so peers that got a copy drop it too).
  void Withdraw(const ConnectionPtr& conn, const proto::FileId& id, const Status& why) {
    auto self = shared_from_this();
    path_->writer().Submit([self, conn, id, why] {
      std::string name = id.RemoteName();
      {
        std::lock_guard<std::mutex> l(self->server_->MetaLock("m/" + name));
        (void)self->server_->RemoveContent(self->path_, id);
        (void)self->server_->meta().Put("t/" + name, std::to_string(UnixSeconds()));
        auto rec = self->server_->replicator().binlog().AppendOwn(kOpDelete, name);
        if (!rec.ok()) DEPOT_LOG_WARN("upload withdraw {}: {}", name, rec.status().ToString());
      }
      self->server_->dedup().Forget(self->path_, name, /*release=*/true);
      self->FailUnlocked(conn, why);
    });
  }

  StorageServer* server_;
  StorePath* path_;
  uint64_t size_;
  std::string ext_;
  Kind kind_;
  proto::FileId slave_;
  proto::FileId master_;
  std::mutex mu_;
  StorePath::PendingFile file_;  // GUARDED_BY(mu_)
  uint32_t crc_ = 0;             // GUARDED_BY(mu_)
  uint64_t written_ = 0;         // GUARDED_BY(mu_)
  bool aborted_ = false;         // GUARDED_BY(mu_)
  bool committing_ = false;      // GUARDED_BY(mu_): file_ is with the commit thread
  Status failed_;                // GUARDED_BY(mu_)
  bool trunk_ = false;           // set before the first chunk
  std::string buf_;              // GUARDED_BY(mu_): a trunk file's bytes
  // Dedup: how a file stored whole is registered (doc/dedup.md).
  // kCounted: a hit whose reference was taken but whose content went before the link was made.
  enum class Reg { kNone, kUnregistered, kRegister, kExtra, kRehome, kCounted };
  std::unique_ptr<Fingerprinter> fp_;  // set before the first chunk
  proto::ContentKey key_;
  Dedup::Found found_;
  Reg reg_ = Reg::kNone;
  std::atomic<bool> first_{false};  // this upload holds its content's BeginUpload turn
  std::atomic<uint64_t> seq_{0};  // the create's binlog record
  std::atomic<bool> registration_used_{false};  // named() ended the BeginCreate registration
};

class UploadStream : public net::BodyStream {
 public:
  UploadStream(StorageServer* s, uint64_t body_len, Kind kind)
      : server_(s), kind_(kind),
        head_(kind == Kind::kSlave ? kSlavePrefix : kUploadPrefix, kind == Kind::kSlave, body_len,
              10 + proto::kFileNameB64Len + proto::kFileSuffixLen) {}

  void OnChunk(const ConnectionPtr& conn, std::string chunk, bool last) override {
    if (!job_ && !draining_) {
      switch (head_.Take(&chunk)) {
        case RequestHead::State::kMalformed:
          server_->Count(proto::kCntUpload, false);
          return conn->Reply(EINVAL);
        case RequestHead::State::kNeedMore:
          return last ? conn->Reply(EINVAL) : conn->ContinueBody();
        case RequestHead::State::kComplete:
          break;
      }
      Status st = Start();
      if (!st.ok()) {
        server_->Count(proto::kCntUpload, false);
        DEPOT_LOG_WARN("upload from {} refused: {}", conn->peer(), st.ToString());
        if (head_.rest() > kDrainMax) return conn->ReplyStatus(st);
        failed_ = st;
        draining_ = true;  // answered once the (small) body is read
      }
    }
    if (draining_) return last ? conn->ReplyStatus(failed_) : conn->ContinueBody();
    auto job = job_;
    path_->writer().Submit([job, conn, chunk = std::move(chunk), last] {
      if (job->failed()) return last ? job->ReplyFailure(conn) : conn->ContinueBody();
      Status s = chunk.empty() ? Status::OK() : job->Write(chunk);
      if (!s.ok()) {
        job->MarkFailed(s);
        return last ? job->ReplyFailure(conn) : conn->ContinueBody();
      }
      if (last) return job->Finish(conn);
      conn->ContinueBody();
    });
  }

  void OnAbort() override {
    if (!job_) return;
    auto job = job_;
    path_->writer().Submit([job] { job->Abort(); });
  }

 private:
  // The prefix is complete: checks it and creates the job.
  Status Start() {
    const std::string& head = head_.bytes();
    uint64_t size = proto::GetU64(head.data() + (kind_ == Kind::kSlave ? 8 : 1));
    size_t ext_at = kind_ == Kind::kSlave ? 16 + proto::kPrefixLen : 9;
    std::string ext(proto::TrimFixed(std::string_view(head).substr(ext_at, proto::kExtLen)));
    if (size != head_.rest()) {
      return Status::InvalidArgument("upload: size does not match the body length");
    }
    DEPOT_RETURN_IF_ERROR(proto::ValidateExt(ext));
    DEPOT_RETURN_IF_ERROR(server_->replicator().CheckQuorumPossible());
    StorePath* path = nullptr;
    proto::FileId slave, master_id;
    if (kind_ == Kind::kSlave) {
      std::string prefix(proto::TrimFixed(std::string_view(head).substr(16, proto::kPrefixLen)));
      std::string master_name = head_.name();
      DEPOT_ASSIGN_OR_RETURN(proto::FileId master,
                             proto::ParseRemoteName(server_->config().group_name, master_name));
      if (master.IsAppender()) return Status::InvalidArgument("the master is an appender file");
      DEPOT_ASSIGN_OR_RETURN(path, server_->PathForFile(master));
      DEPOT_ASSIGN_OR_RETURN(std::string name, proto::MakeSlaveName(master, prefix, ext));
      slave = master;
      slave.name = std::move(name);
      slave.trunk = {};
      master_id = std::move(master);
      if (path->free_bytes() - server_->ReservedBytes(*path) < static_cast<int64_t>(size)) {
        return Status::ResourceExhausted("no space left for the slave file");
      }
    } else {
      uint8_t path_index = static_cast<uint8_t>(head[0]);
      DEPOT_ASSIGN_OR_RETURN(path, server_->PathForUpload(path_index, size));
    }
    path->Consume(static_cast<int64_t>(size));
    job_ = std::make_shared<UploadJob>(server_, path, size, ext, kind_);
    if (kind_ == Kind::kNormal && server_->config().use_trunk_file && path->trunk()->Fits(size)) {
      job_->SetTrunk();
    } else if (kind_ == Kind::kNormal && server_->dedup().Eligible(size)) {
      job_->SetDedup();
    }
    if (kind_ == Kind::kSlave) job_->SetSlave(std::move(slave), std::move(master_id));
    path_ = path;
    return Status::OK();
  }

  StorageServer* server_;
  Kind kind_;
  // Slaves: the master's name (a remote name, at least 10 + 27 + 7 characters) follows.
  RequestHead head_;
  std::shared_ptr<UploadJob> job_;
  StorePath* path_ = nullptr;
  bool draining_ = false;
  Status failed_;
};

// Instant upload (242 INSTANT_UPLOAD, 243 INSTANT_PROVE; doc/dedup.md): a client that knows a
// content's fingerprint and size asks whether the group has it; the server answers with a
// challenge (random ranges of the content and a nonce) and grants a new file ID only to a
// client that sends HMAC-SHA256(nonce, those bytes): the fingerprint alone gets nothing.
constexpr uint64_t kWholeProofMax = 1 << 20;  // up to 1 MiB: the proof covers every byte
constexpr uint64_t kProofRange = 64 * 1024;
constexpr int kProofRanges = 16;
// After this many refused proofs of one content within kRefusalWindowNs, no more challenges for
// it: a client that holds part of the bytes cannot keep trying its luck.
constexpr int kMaxRefusals = 3;
constexpr int64_t kRefusalWindowNs = 600'000'000'000;

class InstantChallenges {
 public:
  struct Entry {
    std::string expected;  // the proof
    proto::ContentKey key;
    std::string canonical;
    std::string ext;
    int path_index = 0;
    int64_t deadline_ns = 0;
  };
  // False when too many challenges are open (a flood never evicts a live one).
  bool Add(const std::string& nonce, Entry e) {
    std::lock_guard<std::mutex> l(mu_);
    int64_t now = MonotonicNanos();
    if (map_.size() >= kMax) {
      for (auto it = map_.begin(); it != map_.end();) {
        it = it->second.deadline_ns < now ? map_.erase(it) : std::next(it);
      }
      if (map_.size() >= kMax) return false;
    }
    e.deadline_ns = now + kTtlNs;
    map_[nonce] = std::move(e);
    return true;
  }
  // Refused proofs per content.
  void Refused(const std::string& content) {
    std::lock_guard<std::mutex> l(mu_);
    int64_t now = MonotonicNanos();
    if (refusals_.size() >= kMax) refusals_.clear();
    auto& r = refusals_[content];
    if (now - r.first > kRefusalWindowNs) r = {now, 0};
    r.second++;
  }
  bool Blocked(const std::string& content) {
    std::lock_guard<std::mutex> l(mu_);
    auto it = refusals_.find(content);
    return it != refusals_.end() && MonotonicNanos() - it->second.first <= kRefusalWindowNs &&
           it->second.second >= kMaxRefusals;
  }
  // One attempt per challenge.
  std::optional<Entry> Take(const std::string& nonce) {
    std::lock_guard<std::mutex> l(mu_);
    auto it = map_.find(nonce);
    if (it == map_.end()) return std::nullopt;
    Entry e = std::move(it->second);
    map_.erase(it);
    if (e.deadline_ns < MonotonicNanos()) return std::nullopt;
    return e;
  }

 private:
  static constexpr size_t kMax = 4096;
  static constexpr int64_t kTtlNs = 60'000'000'000;
  std::mutex mu_;
  std::map<std::string, Entry> map_;  // GUARDED_BY(mu_)
  std::map<std::string, std::pair<int64_t, int>> refusals_;  // GUARDED_BY(mu_): since, count
};


void InstantBegin(StorageServer* s, const std::shared_ptr<InstantChallenges>& pending,
                  const ConnectionPtr& conn, std::string body) {
  auto req = proto::DecodeInstantUpload(body);
  if (!req.ok()) return conn->Reply(EINVAL);
  if (!s->dedup().enabled()) return conn->Reply(EOPNOTSUPP);
  if (!s->dedup().Eligible(req->size)) return conn->Reply(ENOENT);
  s->dedup().Submit([s, pending, conn, req = *req] {
    Dedup& d = s->dedup();
    proto::ContentKey key{req.fp, req.size};
    if (pending->Blocked(key.Encode())) {
      DEPOT_LOG_WARN("instant upload of {} from {}: refused, too many failed proofs", key.Hex(),
                     conn->peer());
      d.CountInstant("refused");
      return conn->PostReply(EACCES);
    }
    Dedup::Found found = d.Find(key);
    auto miss = [&](uint8_t status) {
      DEPOT_LOG_DEBUG("instant upload of {} from {}: not here (status {})", key.Hex(), conn->peer(),
                      status);
      d.CountInstant("miss");
      conn->PostReply(status);
    };
    if (found.kind == Dedup::Lookup::kUnavailable) return miss(EAGAIN);
    if (found.kind != Dedup::Lookup::kHit) return miss(ENOENT);
    auto cid = proto::ParseRemoteName(s->config().group_name, found.canonical);
    if (!cid.ok()) return miss(ENOENT);
    auto path = s->PathForFile(*cid);
    if (!path.ok() || (req.store_path != proto::kStorePathAny && req.store_path != cid->store_path)) {
      return miss(ENOENT);
    }
    Result<std::string> hidden = Status::NotFound("");
    {
      std::lock_guard<std::mutex> l(d.KeyLock(key));
      hidden = d.EnsureHidden(*path, *cid);
    }
    if (!hidden.ok()) return miss(ENOENT);
    int fd = open(hidden->c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return miss(ENOENT);
    struct stat st;
    if (fstat(fd, &st) != 0 || static_cast<uint64_t>(st.st_size) != req.size) {
      close(fd);
      return miss(ENOENT);
    }
    proto::InstantChallenge c;
    c.nonce = SecureRandomBytes(proto::kInstantNonceLen);
    if (req.size <= kWholeProofMax) {
      c.ranges.push_back({0, req.size});
    } else {
      // Offsets from the CSPRNG: a client must not be able to predict them.
      std::string rnd = SecureRandomBytes(8 * kProofRanges);
      for (int i = 0; i < kProofRanges; ++i) {
        uint64_t v = proto::GetU64(rnd.data() + 8 * i);
        c.ranges.push_back({v % (req.size - kProofRange + 1), kProofRange});
      }
    }
    std::string bytes;
    for (const proto::ByteRange& r : c.ranges) {
      size_t at = bytes.size();
      bytes.resize(at + r.length);
      if (!PreadFull(fd, bytes.data() + at, r.length, r.offset)) {
        close(fd);
        return miss(EIO);
      }
    }
    close(fd);
    InstantChallenges::Entry e;
    e.expected = HmacSha256(c.nonce, bytes);
    e.key = key;
    e.canonical = found.canonical;
    e.ext = req.ext;
    e.path_index = (*path)->index();
    if (!pending->Add(c.nonce, std::move(e))) return miss(EBUSY);
    conn->PostReply(0, proto::EncodeInstantChallenge(c));
  });
}

void InstantProve(StorageServer* s, const std::shared_ptr<InstantChallenges>& pending,
                  const ConnectionPtr& conn, std::string body) {
  if (body.size() != proto::kInstantProveLen) return conn->Reply(EINVAL);
  std::string nonce = body.substr(0, proto::kInstantNonceLen);
  std::string proof = body.substr(proto::kInstantNonceLen);
  auto e = pending->Take(nonce);
  if (!e || !ConstantTimeEquals(proof, e->expected)) {
    if (e) pending->Refused(e->key.Encode());
    s->dedup().CountInstant("refused");
    DEPOT_LOG_WARN("instant upload from {} refused: {}", conn->peer(),
                   e ? "wrong proof" : "unknown or expired challenge");
    return conn->Reply(EACCES);
  }
  StorePath* p = s->paths()[static_cast<size_t>(e->path_index)].get();
  auto job = std::make_shared<UploadJob>(s, p, e->key.size, e->ext, Kind::kNormal);
  s->dedup().Submit([job, conn, e = std::move(*e)] { job->GrantInstant(conn, e.key, e.canonical); });
}

}  // namespace

void RegisterUpload(StorageServer* s, net::FrameServer* fs) {
  auto reg = [s, fs](uint8_t cmd, Kind kind, uint64_t prefix) {
    net::CommandSpec upload;
    upload.max_body = prefix + s->config().max_file_size;
    upload.stream = [s, kind](const ConnectionPtr&, const FrameHeader& h) {
      return std::make_unique<UploadStream>(s, h.body_len, kind);
    };
    fs->Register(cmd, upload);
  };
  reg(proto::kStorageUpload, Kind::kNormal, kUploadPrefix);
  reg(proto::kStorageUploadAppender, Kind::kAppender, kUploadPrefix);
  reg(proto::kStorageUploadSlave, Kind::kSlave, kSlavePrefix + proto::kMaxRemoteNameLen);

  auto pending = std::make_shared<InstantChallenges>();
  net::CommandSpec begin;
  begin.max_body = proto::kInstantUploadLen;
  begin.handle = [s, pending](const ConnectionPtr& c, const FrameHeader&, std::string body) {
    InstantBegin(s, pending, c, std::move(body));
  };
  fs->Register(proto::kDepotInstantUpload, begin);
  net::CommandSpec prove;
  prove.max_body = proto::kInstantProveLen;
  prove.handle = [s, pending](const ConnectionPtr& c, const FrameHeader&, std::string body) {
    InstantProve(s, pending, c, std::move(body));
  };
  fs->Register(proto::kDepotInstantProve, prove);
}

}  // namespace depot::storage
