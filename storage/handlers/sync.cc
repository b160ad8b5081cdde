// Replication, receiver side (doc/replication.md): SYNC_HELLO (220), SYNC_RECORD (221),
// SYNC_FLUSH (222), SYNC_DUMP_REQUEST (223) and SYNC_DUMP_DONE (224). All internal: they need the
// cluster-secret handshake first.
//
// A record is applied at most once per (origin, oseq): one already applied is answered at once
// (its body is read and dropped). A create never replaces a deleted file's tombstone and keeps a
// good existing copy; a metadata change applies only when its version is newer (last writer wins).
// Every applied record is appended to this server's binlog, so that it can later serve a dump.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mutex>

#include "common/base/fs.h"
#include "common/base/hash.h"
#include "common/base/logging.h"
#include "common/proto/dedup.h"
#include "common/proto/sync.h"
#include "storage/appender_io.h"
#include "storage/dedup.h"
#include "storage/replicator.h"
#include "storage/storage_server.h"
#include "storage/trunk.h"

namespace depot::storage {
namespace {

using net::ConnectionPtr;
using proto::FrameHeader;

// Records the record as applied: binlog, position, metric.
Status Applied(StorageServer* s, const proto::SyncRecordHead& h, const std::string& name) {
  uint64_t offset = 0, length = 0;
  if (OpHasRange(h.op)) {
    offset = h.version;
    length = h.data_len;
  }
  auto r = s->replicator().binlog().AppendApplied(h.origin, h.oseq, h.op, name, 0, offset, length);
  if (!r.ok()) return r.status();
  s->replicator().MarkApplied(h.origin, h.oseq);
  s->replicator().CountApplied();
  return Status::OK();
}

bool HasTombstone(StorageServer* s, const std::string& name) {
  auto t = s->meta().Get("t/" + name);
  return t.ok() && t->has_value();
}

// True when the file at `full` is a good copy of `id` (normal files: size and CRC32 from the
// name; slaves: the size). An appender file is always written again: its content may have
// changed at the same size.
bool GoodCopy(StorePath* p, const proto::FileId& id, const std::string& full, uint64_t size) {
  if (id.IsAppender()) return false;
  if (id.InTrunk()) {
    // Its slot holds exactly this file (checked against its CRC32 if not yet since a crash).
    auto opened = StorageServer::OpenFile(p, id);
    if (opened.ok()) close(opened->fd);
    return opened.ok();
  }
  struct stat st;
  if (stat(full.c_str(), &st) != 0 || static_cast<uint64_t>(st.st_size) != size) return false;
  if (!id.NamePinsContent()) return true;  // a slave: its name has the master's CRC32
  return StorePath::FileMatches(full, size, id.fields.crc32);
}

// A replicated create: the body goes to a pending file in the file's own directory.
class CreateJob {
 public:
  CreateJob(StorageServer* s, StorePath* p, proto::FileId id, proto::SyncRecordHead h,
            std::optional<DedupRef> dedup)
      : s_(s), p_(p), id_(std::move(id)), h_(h), name_(id_.RemoteName()),
        full_(p->FullPath(id_.RelativePath())), dedup_(std::move(dedup)) {}

  // First call, on a writer thread: decides whether the bytes are needed at all.
  Status Prepare() {
    if ((h_.flags & proto::kSyncFlagGone) || HasTombstone(s_, name_) ||
        GoodCopy(p_, id_, full_, h_.data_len)) {
      keep_ = false;
      return Status::OK();
    }
    if (id_.IsAppender() && id_.fields.source_ip == s_->source_ip() &&
        StorageServer::HasFile(p_, id_)) {
      // An appender file of ours announced again by a peer (an fsck repair there): our copy is
      // the one clients change, and may be ahead of the peer's.
      keep_ = false;
      return Status::OK();
    }
    if (h_.flags & proto::kSyncFlagLink) return Status::OK();  // linked in Finish
    if (id_.InTrunk()) {
      // A trunk file's bytes are gathered in memory and written into its slot in one write.
      if (h_.data_len + TrunkStore::kHeaderSize > id_.trunk.alloc) {
        return Status::InvalidArgument("replicated trunk file larger than its slot");
      }
      buf_.reserve(h_.data_len);
      return Status::OK();
    }
    DEPOT_ASSIGN_OR_RETURN(file_, p_->CreatePendingIn(id_.dir1, id_.dir2));
    return Status::OK();
  }

  Status Write(const std::string& data) {
    if (!keep_) return Status::OK();
    if (written_ + data.size() > h_.data_len) return Status::InvalidArgument("record body too long");
    if (id_.InTrunk()) {
      buf_ += data;
    } else {
      DEPOT_RETURN_IF_ERROR(WriteAll(file_.fd, data.data(), data.size(), "sync create"));
    }
    crc_ = Crc32Update(crc_, data.data(), data.size());
    written_ += data.size();
    return Status::OK();
  }

  Status Finish() {
    if (keep_ && (h_.flags & proto::kSyncFlagLink)) return FinishLink();
    if (keep_) {
      if (written_ != h_.data_len) return Status::InvalidArgument("record body too short");
      if (id_.NamePinsContent() &&
          (crc_ != id_.fields.crc32 || written_ != proto::SizeFromWord(id_.fields.size_word))) {
        // The sender's copy is damaged: sending it again would not help. The record counts as
        // applied without the file; `depot fsck --repair` copies a good one when some member
        // has it.
        DEPOT_LOG_ERROR("replicated content of {} does not match its file ID: not stored; run "
                        "depot fsck", name_);
        keep_ = false;
      }
    }
    if (keep_) {
      // The content lock first (as appender changes take it), then the metadata lock: a
      // replicated change of the same appender file cannot run while it is replaced.
      auto content = s_->ContentLock(name_);
      std::lock_guard<std::mutex> l(s_->MetaLock("m/" + name_));
      if (!HasTombstone(s_, name_) && id_.InTrunk()) {
        DEPOT_RETURN_IF_ERROR(p_->trunk()->WriteReplica(id_, buf_));
      } else if (!HasTombstone(s_, name_)) {  // a delete may have arrived from another origin
        Status st = p_->Publish(&file_, id_.name);
        if (st.code() == StatusCode::kAlreadyExists) {
          // The existing copy was found bad in Prepare (a torn write before a crash): replace it.
          unlink(full_.c_str());
          st = p_->Publish(&file_, id_.name);
        }
        DEPOT_RETURN_IF_ERROR(st);
      }
    }
    StorePath::Discard(&file_);
    DEPOT_RETURN_IF_ERROR(IndexDedup());
    return Applied(s_, h_, name_);
  }

 private:
  // A deduplicated file sent as a link: one more link to this member's copy of the canonical
  // file, whose bytes are the source's by replication (the source compared the new file's bytes
  // with it). NotFound (ENOENT) when this member has no copy: the sender then sends the bytes.
  Status FinishLink() {
    Dedup& d = s_->dedup();
    auto cid = proto::ParseRemoteName(s_->config().group_name, dedup_->canonical);
    if (!cid.ok() || cid->store_path != id_.store_path || !cid->NamePinsContent() ||
        cid->InTrunk() || !id_.NamePinsContent() || id_.InTrunk()) {
      return Status::NotFound("link target not usable here:", dedup_->canonical);
    }
    {
      // Lock order everywhere: content lock, then metadata lock, then the content key's lock.
      auto content = s_->ContentLock(name_);
      std::lock_guard<std::mutex> l(s_->MetaLock("m/" + name_));
      std::lock_guard<std::mutex> kl(d.KeyLock(dedup_->key));
      DEPOT_ASSIGN_OR_RETURN(std::string hidden, d.EnsureHidden(p_, *cid));
      // The canonical copy here must have the size this file's name carries.
      struct stat st;
      if (stat(hidden.c_str(), &st) != 0 ||
          static_cast<uint64_t>(st.st_size) != proto::SizeFromWord(id_.fields.size_word)) {
        return Status::NotFound("link target has another size:", dedup_->canonical);
      }
      if (!HasTombstone(s_, name_)) {
        DEPOT_RETURN_IF_ERROR(MakeDirs(DirName(full_)));
        DEPOT_RETURN_IF_ERROR(Dedup::LinkFile(hidden, full_, /*replace=*/true));
      }
    }
    DEPOT_RETURN_IF_ERROR(IndexDedup());
    return Applied(s_, h_, name_);
  }

  // The source's index entry, kept here too (deletes served by this member release it).
  Status IndexDedup() {
    if (!dedup_ || !StorageServer::HasFile(p_, id_)) return Status::OK();
    return s_->dedup().PutIndex(name_, *dedup_);
  }

  StorageServer* s_;
  StorePath* p_;
  proto::FileId id_;
  proto::SyncRecordHead h_;
  std::string name_, full_;
  std::optional<DedupRef> dedup_;
  bool keep_ = true;
  StorePath::PendingFile file_;
  std::string buf_;  // a trunk file's bytes
  uint64_t written_ = 0;
  uint32_t crc_ = 0;
};

Status ApplyDelete(StorageServer* s, StorePath* p, const proto::FileId& id,
                   const proto::SyncRecordHead& h) {
  std::string name = id.RemoteName();
  {
    std::lock_guard<std::mutex> l(s->MetaLock("m/" + name));
    Status removed = s->RemoveContent(p, id);
    if (!removed.ok() && removed.code() != StatusCode::kNotFound) return removed;
    DEPOT_RETURN_IF_ERROR(s->meta().Delete("m/" + name));
    DEPOT_RETURN_IF_ERROR(s->meta().Delete("mv/" + name));
    DEPOT_RETURN_IF_ERROR(s->meta().Put("t/" + name, std::to_string(UnixSeconds())));
  }
  // Dedup bookkeeping after the metadata lock (it takes the content key's lock).
  s->dedup().Forget(p, name, /*release=*/false);
  return Applied(s, h, name);
}

Status ApplyMeta(StorageServer* s, StorePath* p, const proto::FileId& id,
                 const proto::SyncRecordHead& h, const std::string& meta) {
  std::string name = id.RemoteName();
  std::lock_guard<std::mutex> l(s->MetaLock("m/" + name));
  // Applied even when the file has not arrived yet (a change made on another member while the
  // source was down may overtake the create); never for a deleted file.
  (void)p;
  if (!HasTombstone(s, name)) {
    auto old = s->meta().Get("mv/" + name);
    if (!old.ok()) return old.status();
    uint64_t local = *old ? std::strtoull((*old)->c_str(), nullptr, 10) : 0;
    if (h.version > local) {
      if ((h.flags & proto::kSyncFlagGone) || meta.empty()) {
        DEPOT_RETURN_IF_ERROR(s->meta().Delete("m/" + name));
      } else {
        if (!ParseMeta(meta).ok()) return Status::InvalidArgument("replicated metadata is malformed");
        DEPOT_RETURN_IF_ERROR(s->meta().Put("m/" + name, meta));
      }
      DEPOT_RETURN_IF_ERROR(s->meta().Put("mv/" + name, std::to_string(h.version)));
    }
  }
  return Applied(s, h, name);
}

// A replicated append or modify: the bytes go to a pending file, then into the file at the
// record's offset. Writing the same bytes again is harmless (records may be sent twice), and a
// gap (the file shorter than the offset: a truncate follows) is filled with zeros until the
// later records arrive.
class RangeJob {
 public:
  RangeJob(StorageServer* s, StorePath* p, proto::FileId id, proto::SyncRecordHead h)
      : s_(s), p_(p), id_(std::move(id)), h_(h), name_(id_.RemoteName()),
        full_(p->FullPath(id_.RelativePath())) {}
  ~RangeJob() { StorePath::Discard(&spool_); }

  Status Prepare() { return Status::OK(); }  // the spool is made by the first Write

  Status Write(const std::string& data) {
    if (spool_.fd < 0) {
      DEPOT_ASSIGN_OR_RETURN(spool_, p_->CreatePendingIn(id_.dir1, id_.dir2));
    }
    if (written_ + data.size() > h_.data_len) return Status::InvalidArgument("record body too long");
    DEPOT_RETURN_IF_ERROR(WriteAll(spool_.fd, data.data(), data.size(), "sync range"));
    written_ += data.size();
    return Status::OK();
  }

  Status Finish() {
    if (written_ != h_.data_len) return Status::InvalidArgument("record body too short");
    {
      auto lock = s_->ContentLock(name_);
      if (!(h_.flags & proto::kSyncFlagGone) && !HasTombstone(s_, name_)) {
        int fd = open(full_.c_str(), O_WRONLY | O_CLOEXEC);
        if (fd < 0 && errno != ENOENT) return Status::FromErrno(errno, "open", full_);
        if (fd < 0) {
          // Its create was sent as gone (deleted since): the delete record follows.
          DEPOT_LOG_WARN("sync {} of {}: no such file here; skipped", h_.op, name_);
        } else {
          FdCloser closer(fd);
          if (h_.op == kOpTruncate) {
            if (ftruncate(fd, static_cast<off_t>(h_.version)) != 0) {
              return Status::FromErrno(errno, "ftruncate", full_);
            }
          } else if (h_.data_len > 0) {
            DEPOT_RETURN_IF_ERROR(CopyRange(spool_.fd, 0, fd, h_.version, h_.data_len));
          }
          if (p_->durable() && fdatasync(fd) != 0) return Status::FromErrno(errno, "fdatasync", full_);
        }
      }
    }
    StorePath::Discard(&spool_);
    return Applied(s_, h_, name_);
  }

 private:
  StorageServer* s_;
  StorePath* p_;
  proto::FileId id_;
  proto::SyncRecordHead h_;
  std::string name_, full_;
  StorePath::PendingFile spool_;
  uint64_t written_ = 0;
};

class RecordStream : public net::BodyStream {
 public:
  RecordStream(StorageServer* s, uint64_t body_len) : s_(s), body_len_(body_len) {}

  void OnChunk(const ConnectionPtr& conn, std::string chunk, bool last) override {
    if (!parsed_) {
      if (prefix_.size() < proto::kSyncRecordHead) {
        size_t take = std::min(proto::kSyncRecordHead - prefix_.size(), chunk.size());
        prefix_.append(chunk, 0, take);
        chunk.erase(0, take);
        if (prefix_.size() == proto::kSyncRecordHead) {
          auto h = proto::DecodeSyncRecordHead(prefix_);
          if (!h.ok()) return Refuse(conn, h.status());
          head_ = *h;
          dedup_len_ = (head_.flags & proto::kSyncFlagDedup) ? proto::kDedupHeadLen : 0;
          if (body_len_ != proto::kSyncRecordHead + head_.name_len + dedup_len_ + head_.data_len) {
            return Refuse(conn, Status::InvalidArgument("sync record: body length mismatch"));
          }
        }
      }
      size_t need = proto::kSyncRecordHead + head_.name_len + dedup_len_;
      if (prefix_.size() >= proto::kSyncRecordHead && prefix_.size() < need) {
        size_t take = std::min(need - prefix_.size(), chunk.size());
        prefix_.append(chunk, 0, take);
        chunk.erase(0, take);
      }
      if (prefix_.size() < proto::kSyncRecordHead || prefix_.size() < need) {
        if (last) return Refuse(conn, Status::InvalidArgument("sync record: truncated"));
        return conn->ContinueBody();
      }
      parsed_ = true;
      std::string name = prefix_.substr(proto::kSyncRecordHead, head_.name_len);
      std::optional<DedupRef> dedup;
      if (dedup_len_ > 0) {
        DedupRef ref;
        Status ds = proto::DecodeDedupHead(prefix_.substr(proto::kSyncRecordHead + head_.name_len),
                                           &ref.key, &ref.canonical);
        if (!ds.ok()) return Refuse(conn, ds);
        dedup = std::move(ref);
      }
      auto id = proto::ParseRemoteName(s_->config().group_name, name);
      if (!id.ok()) return Refuse(conn, id.status());
      auto path = s_->PathForFile(*id);
      if (!path.ok()) return Refuse(conn, path.status());
      if (!s_->replicator().Accepting(conn.get())) {
        return conn->ReplyAndClose(EBUSY);  // catching up: only the dump is applied now
      }
      id_ = *id;
      path_ = *path;
      if (head_.oseq <= s_->replicator().Applied(head_.origin)) {
        mode_ = Mode::kSkip;
      } else if (head_.op == 'C') {
        mode_ = Mode::kCreate;
        job_ = std::make_shared<CreateJob>(s_, path_, id_, head_, std::move(dedup));
      } else if (head_.op == 'M') {
        mode_ = Mode::kMeta;
      } else if (OpHasRange(head_.op)) {
        mode_ = Mode::kRange;
        range_ = std::make_shared<RangeJob>(s_, path_, id_, head_);
      } else {
        mode_ = Mode::kDelete;
      }
    }
    if (parsed_ && !chunk.empty()) s_->replicator().Accepting(conn.get());  // dump progress
    switch (mode_) {
      case Mode::kSkip:
        return last ? conn->Reply(0) : conn->ContinueBody();
      case Mode::kMeta:
        meta_ += chunk;
        if (!last) return conn->ContinueBody();
        path_->writer().Submit([s = s_, p = path_, id = id_, h = head_, meta = std::move(meta_), conn] {
          Status st = ApplyMeta(s, p, id, h, meta);
          if (!st.ok()) {
            DEPOT_LOG_WARN("sync metadata {}: {}", id.RemoteName(), st.ToString());
            return conn->PostReplyAndClose(proto::StatusToWire(st));
          }
          conn->PostReply(0);
        });
        return;
      case Mode::kDelete:
        path_->writer().Submit([s = s_, p = path_, id = id_, h = head_, conn] {
          Status st = ApplyDelete(s, p, id, h);
          if (!st.ok()) {
            DEPOT_LOG_WARN("sync delete {}: {}", id.RemoteName(), st.ToString());
            return conn->PostReplyAndClose(proto::StatusToWire(st));
          }
          conn->PostReply(0);
        });
        return;
      case Mode::kRange:
        return SubmitChunk(range_, conn, std::move(chunk), last, "change");
      case Mode::kCreate:
        return SubmitChunk(job_, conn, std::move(chunk), last, "create");
    }
  }

  void OnAbort() override {
    if (path_ == nullptr) return;
    if (job_ || range_) {
      // The jobs (and their pending files) die on a writer thread, after any queued chunk.
      path_->writer().Submit([job = job_, range = range_] {});
    }
    job_.reset();
    range_.reset();
  }

 private:
  enum class Mode { kSkip, kCreate, kMeta, kDelete, kRange };
  // Hands one chunk of a record's bytes to its job on a writer thread (Prepare before the
  // first, Finish after the last), then asks for the next chunk, answers the record, or refuses
  // it and closes the connection.
  template <typename Job>
  void SubmitChunk(const std::shared_ptr<Job>& job, const ConnectionPtr& conn, std::string chunk,
                   bool last, const char* what) {
    bool first = !prepared_;
    prepared_ = true;
    path_->writer().Submit([job, conn, first, chunk = std::move(chunk), last, what] {
      Status st = first ? job->Prepare() : Status::OK();
      if (st.ok() && !chunk.empty()) st = job->Write(chunk);
      if (st.ok() && last) st = job->Finish();
      if (!st.ok()) {
        DEPOT_LOG_WARN("sync {} from {}: {}", what, conn->peer(), st.ToString());
        return conn->PostReplyAndClose(proto::StatusToWire(st));
      }
      if (last) return conn->PostReply(0);
      conn->ContinueBody();
    });
  }

  void Refuse(const ConnectionPtr& conn, const Status& s) {
    DEPOT_LOG_WARN("sync record from {} refused: {}", conn->peer(), s.ToString());
    conn->ReplyAndClose(proto::StatusToWire(s));
  }

  StorageServer* s_;
  uint64_t body_len_;
  std::string prefix_;
  bool parsed_ = false;
  bool prepared_ = false;
  proto::SyncRecordHead head_;
  proto::FileId id_;
  StorePath* path_ = nullptr;
  Mode mode_ = Mode::kSkip;
  std::shared_ptr<CreateJob> job_;
  std::shared_ptr<RangeJob> range_;
  std::string meta_;
  size_t dedup_len_ = 0;
};

void Hello(StorageServer* s, const ConnectionPtr& c, std::string body) {
  auto hello = proto::DecodeSyncHello(body);
  if (!hello.ok()) return c->ReplyStatus(hello.status());
  auto reply = s->replicator().Hello(*hello, c.get());
  const void* key = c.get();
  c->set_close_hook([s, key] { s->replicator().ConnectionClosed(key); });
  c->Reply(0, proto::EncodeSyncHelloReply(reply));
}

}  // namespace

void RegisterSync(StorageServer* s, net::FrameServer* fs) {
  net::CommandSpec hello;
  hello.max_body = 4096;
  hello.internal = true;
  hello.handle = [s](const ConnectionPtr& c, const FrameHeader&, std::string body) {
    Hello(s, c, std::move(body));
  };
  fs->Register(proto::kDepotSyncHello, hello);

  net::CommandSpec record;
  record.max_body = proto::kSyncRecordHead + proto::kMaxRemoteNameLen +
                    std::max<uint64_t>(s->config().max_file_size, 1 << 20);
  record.internal = true;
  record.stream = [s](const ConnectionPtr&, const FrameHeader& h) {
    return std::make_unique<RecordStream>(s, h.body_len);
  };
  fs->Register(proto::kDepotSyncRecord, record);

  net::CommandSpec flush;
  flush.max_body = 0;
  flush.internal = true;
  flush.handle = [s](const ConnectionPtr& c, const FrameHeader&, std::string) {
    s->paths()[0]->writer().Submit([s, c] {
      Status st = s->replicator().Flush();
      if (!st.ok()) DEPOT_LOG_WARN("sync flush: {}", st.ToString());
      c->PostReply(proto::StatusToWire(st));
    });
  };
  fs->Register(proto::kDepotSyncFlush, flush);

  net::CommandSpec dump;
  dump.max_body = 4096;
  dump.internal = true;
  dump.handle = [s](const ConnectionPtr& c, const FrameHeader&, std::string body) {
    auto to = proto::DecodeDumpRequest(body);
    if (!to.ok()) return c->ReplyStatus(to.status());
    c->ReplyStatus(s->replicator().StartDump(*to));
  };
  fs->Register(proto::kDepotSyncDumpRequest, dump);

  net::CommandSpec done;
  done.max_body = 4096;
  done.internal = true;
  done.handle = [s](const ConnectionPtr& c, const FrameHeader&, std::string) {
    const void* key = c.get();
    s->paths()[0]->writer().Submit([s, c, key] {
      Status st = s->replicator().DumpDone(key);
      if (!st.ok()) DEPOT_LOG_WARN("dump done from {}: {}", c->peer(), st.ToString());
      c->PostReply(proto::StatusToWire(st));
    });
  };
  fs->Register(proto::kDepotSyncDumpDone, done);
}

}  // namespace depot::storage
