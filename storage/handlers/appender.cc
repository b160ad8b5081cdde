// Appender files (doc/appender.md): append (24), modify (34), truncate (36) and regenerate
// appender filename (38). Uploading an appender file (23) is in upload.cc.
//
// Append and modify stream their bytes into a pending file first, so that a cut-off request
// changes nothing. The change itself happens on a writer thread under the file's own lock
// (StorageServer::ContentLock, one mutex per file name, which the pusher also takes to read the
// changed bytes): the checks (an appender file that exists, offset within the file), the binlog
// record, then the bytes copied in at the offset. Concurrent changes of one file are therefore
// serialised, each applied whole, and a long one holds up no other file.
//
// The record goes first (synced first when durable_writes is on): a crash after the record but
// before the bytes leaves a record whose push sends whatever bytes the file then has, and the
// client, not acknowledged, writes them again; bytes without a record could never reach the peers.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mutex>

#include "common/base/daemon.h"
#include "common/base/fs.h"
#include "common/base/hash.h"
#include "common/base/logging.h"
#include "storage/appender_io.h"
#include "storage/handlers/request_head.h"
#include "storage/replicator.h"
#include "storage/storage_server.h"

namespace depot::storage {
namespace {

using net::ConnectionPtr;
using proto::FrameHeader;

// Resolves a bare remote name (these commands carry no group) to an appender file of ours.
Result<std::pair<proto::FileId, StorePath*>> ResolveAppender(StorageServer* s,
                                                              std::string_view name) {
  DEPOT_ASSIGN_OR_RETURN(proto::FileId id, proto::ParseRemoteName(s->config().group_name, name));
  DEPOT_ASSIGN_OR_RETURN(StorePath * p, s->PathForFile(id));
  return std::make_pair(std::move(id), p);
}

// Opens an appender file to change it (its content lock held) and reads its size.
Result<int> OpenForChange(const std::string& full, const std::string& name, uint64_t* size) {
  int fd = open(full.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    return errno == ENOENT ? Status::NotFound("no such file:", name)
                           : Status::FromErrno(errno, "open", full);
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    Status s = Status::FromErrno(errno, "fstat", full);
    close(fd);
    return s;
  }
  *size = static_cast<uint64_t>(st.st_size);
  return fd;
}

// One append or modify: the body goes to a pending file, then into the target under its lock.
class ChangeJob : public std::enable_shared_from_this<ChangeJob> {
 public:
  ChangeJob(StorageServer* s, StorePath* p, proto::FileId id, bool append, uint64_t offset,
            uint64_t size)
      : s_(s), p_(p), id_(std::move(id)), append_(append), offset_(offset), size_(size) {}

  Status Write(const std::string& data) {
    if (spool_.fd < 0) {
      DEPOT_ASSIGN_OR_RETURN(spool_, p_->CreatePendingIn(id_.dir1, id_.dir2));
    }
    if (written_ + data.size() > size_) return Status::InvalidArgument("body longer than size");
    DEPOT_RETURN_IF_ERROR(WriteAll(spool_.fd, data.data(), data.size(), "append"));
    written_ += data.size();
    return Status::OK();
  }

  Status Finish() {
    if (written_ != size_) return Status::InvalidArgument("body shorter than size");
    std::string name = id_.RemoteName();
    std::string full = p_->FullPath(id_.RelativePath());
    auto lock = s_->ContentLock(name);
    uint64_t cur = 0;
    DEPOT_ASSIGN_OR_RETURN(int fd, OpenForChange(full, name, &cur));
    FdCloser closer(fd);
    uint64_t at = append_ ? cur : offset_;
    if (at > cur) {
      return Status::InvalidArgument("modify offset " + std::to_string(at) + " is past the end (" +
                                     std::to_string(cur) + " bytes)");
    }
    Binlog& binlog = s_->replicator().binlog();
    auto rec = binlog.AppendOwnRange(append_ ? kOpAppend : kOpModify, name, at, size_);
    if (!rec.ok()) return rec.status();
    seq_ = rec->seq;
    if (p_->durable()) DEPOT_RETURN_IF_ERROR(binlog.Sync());
    CrashPoint(append_ ? "append-recorded" : "modify-recorded");
    if (size_ > 0) DEPOT_RETURN_IF_ERROR(CopyRange(spool_.fd, 0, fd, at, size_));
    if (p_->durable() && fdatasync(fd) != 0) return Status::FromErrno(errno, "fdatasync", full);
    StorePath::Discard(&spool_);
    return Status::OK();
  }

  uint64_t seq() const { return seq_; }
  uint64_t size() const { return size_; }
  const proto::FileId& id() const { return id_; }
  ~ChangeJob() { StorePath::Discard(&spool_); }

 private:
  StorageServer* s_;
  StorePath* p_;
  proto::FileId id_;
  bool append_;
  uint64_t offset_;
  uint64_t size_;
  StorePath::PendingFile spool_;
  uint64_t written_ = 0;
  uint64_t seq_ = 0;
};

// 24: name_len8 + size8 + name + bytes; 34: name_len8 + offset8 + size8 + name + bytes.
class ChangeStream : public net::BodyStream {
 public:
  ChangeStream(StorageServer* s, uint64_t body_len, bool append)
      : s_(s), append_(append), head_(append ? 16 : 24, /*named=*/true, body_len) {}

  void OnChunk(const ConnectionPtr& conn, std::string chunk, bool last) override {
    if (!job_ && !draining_) {
      switch (head_.Take(&chunk)) {
        case RequestHead::State::kMalformed:
          return conn->Reply(EINVAL);
        case RequestHead::State::kNeedMore:
          return last ? conn->Reply(EINVAL) : conn->ContinueBody();
        case RequestHead::State::kComplete:
          break;
      }
      Status st = Start();
      if (!st.ok()) {
        DEPOT_LOG_WARN("{} from {} refused: {}", append_ ? "append" : "modify", conn->peer(),
                       st.ToString());
        Count(false);
        if (head_.rest() > kDrainMax) return conn->ReplyStatus(st);
        failed_ = st;
        draining_ = true;  // answered once the (small) body is read
      }
    }
    if (draining_) return last ? conn->ReplyStatus(failed_) : conn->ContinueBody();
    auto job = job_;
    auto self_failed = failed_box_;
    StorageServer* s = s_;
    bool append = append_;
    path_->writer().Submit([s, job, conn, chunk = std::move(chunk), last, self_failed, append] {
      Status st = self_failed->ok() && !chunk.empty() ? job->Write(chunk) : Status::OK();
      if (!st.ok() && self_failed->ok()) *self_failed = st;
      if (!last) return conn->ContinueBody();
      if (self_failed->ok()) *self_failed = job->Finish();
      Status fin = *self_failed;
      if (!fin.ok()) {
        DEPOT_LOG_WARN("{} {} from {}: {}", append ? "append to" : "modify", job->id().RemoteName(),
                       conn->peer(), fin.ToString());
        s->Count(append ? proto::kCntAppend : proto::kCntModify, false);
        return conn->PostReply(proto::StatusToWire(fin));
      }
      s->replicator().AwaitQuorum(job->seq(), [s, conn, job, append](Status q) {
        // The change is made; a quorum timeout is reported, not undone (the peers catch up).
        s->Count(append ? proto::kCntAppend : proto::kCntModify, q.ok());
        if (q.ok()) {
          s->Count(append ? proto::kCntAppendBytes : proto::kCntModifyBytes, true,
                   static_cast<int64_t>(job->size()));
          s->TouchSourceUpdate();
        }
        conn->PostReply(proto::StatusToWire(q));
      });
    });
  }

 private:
  Status Start() {
    const std::string& head = head_.bytes();
    uint64_t offset = append_ ? 0 : proto::GetU64(head.data() + 8);
    uint64_t size = proto::GetU64(head.data() + (append_ ? 8 : 16));
    std::string name = head_.name();
    if (size != head_.rest()) {
      return Status::InvalidArgument("size does not match the body length");
    }
    if (static_cast<int64_t>(offset) < 0) return Status::InvalidArgument("negative offset");
    DEPOT_ASSIGN_OR_RETURN(auto resolved, ResolveAppender(s_, name));
    // FastDFS answers EINVAL for a change of a file that is not an appender file.
    if (!resolved.first.IsAppender()) {
      return Status::InvalidArgument("not an appender file:", name);
    }
    DEPOT_RETURN_IF_ERROR(s_->replicator().CheckQuorumPossible());
    path_ = resolved.second;
    job_ = std::make_shared<ChangeJob>(s_, path_, std::move(resolved.first), append_, offset, size);
    return Status::OK();
  }

  void Count(bool ok) { s_->Count(append_ ? proto::kCntAppend : proto::kCntModify, ok); }

  StorageServer* s_;
  bool append_;
  RequestHead head_;
  std::shared_ptr<ChangeJob> job_;
  StorePath* path_ = nullptr;
  bool draining_ = false;
  Status failed_;
  // The job's failure, seen by its disk work (one writer-thread task at a time per stream).
  std::shared_ptr<Status> failed_box_ = std::make_shared<Status>();
};

// 36: name_len8 + new_size8 + name.
void Truncate(StorageServer* s, const ConnectionPtr& conn, std::string body) {
  if (body.size() < 16) return conn->Reply(EINVAL);
  uint64_t name_len = proto::GetU64(body.data());
  uint64_t new_size = proto::GetU64(body.data() + 8);
  if (name_len != body.size() - 16 || static_cast<int64_t>(new_size) < 0) {
    return conn->Reply(EINVAL);
  }
  auto resolved = ResolveAppender(s, std::string_view(body).substr(16));
  if (!resolved.ok() || !resolved->first.IsAppender()) {
    s->Count(proto::kCntTruncate, false);
    return conn->Reply(EINVAL);
  }
  if (Status q = s->replicator().CheckQuorumPossible(); !q.ok()) return conn->ReplyStatus(q);
  auto [id, p] = *resolved;
  p->writer().Submit([s, p = p, id = id, conn, new_size] {
    std::string name = id.RemoteName();
    std::string full = p->FullPath(id.RelativePath());
    uint64_t seq = 0;
    Status st = [&]() -> Status {
      auto lock = s->ContentLock(name);
      uint64_t cur = 0;
      DEPOT_ASSIGN_OR_RETURN(int fd, OpenForChange(full, name, &cur));
      FdCloser closer(fd);
      if (new_size > cur) {
        return Status::InvalidArgument("truncate to " + std::to_string(new_size) +
                                       " bytes: larger than the file (" + std::to_string(cur) +
                                       ")");
      }
      Binlog& binlog = s->replicator().binlog();
      auto rec = binlog.AppendOwnRange(kOpTruncate, name, new_size, 0);
      if (!rec.ok()) return rec.status();
      seq = rec->seq;
      if (p->durable()) DEPOT_RETURN_IF_ERROR(binlog.Sync());
      CrashPoint("truncate-recorded");
      if (ftruncate(fd, static_cast<off_t>(new_size)) != 0) {
        return Status::FromErrno(errno, "ftruncate", full);
      }
      if (p->durable() && fdatasync(fd) != 0) return Status::FromErrno(errno, "fdatasync", full);
      return Status::OK();
    }();
    if (!st.ok()) {
      DEPOT_LOG_WARN("truncate {} from {}: {}", name, conn->peer(), st.ToString());
      s->Count(proto::kCntTruncate, false);
      return conn->PostReply(proto::StatusToWire(st));
    }
    s->replicator().AwaitQuorum(seq, [s, conn](Status q) {
      s->Count(proto::kCntTruncate, q.ok());
      if (q.ok()) s->TouchSourceUpdate();
      conn->PostReply(proto::StatusToWire(q));
    });
  });
}

// 38: the bare remote name of an appender file; reply group16 + the new remote name. The file
// gets a normal file's name (size and CRC32 of its content, a new creation time, the old name's
// digits and extension) and the appender name is gone. Metadata moves with it.
void Regenerate(StorageServer* s, const ConnectionPtr& conn, std::string body) {
  auto resolved = ResolveAppender(s, body);
  if (!resolved.ok() || !resolved->first.IsAppender()) {
    return conn->Reply(EINVAL);
  }
  if (Status q = s->replicator().CheckQuorumPossible(); !q.ok()) return conn->ReplyStatus(q);
  auto [id, p] = *resolved;
  p->writer().Submit([s, p = p, old = id, conn] {
    std::string old_name = old.RemoteName();
    std::string old_full = p->FullPath(old.RelativePath());
    Binlog& binlog = s->replicator().binlog();
    proto::FileId id = old;
    uint64_t seq = 0;
    Status st = [&]() -> Status {
      // The content lock keeps appends out while the CRC32 is computed and the name changes; the
      // metadata lock is taken only around the metadata and tombstone changes.
      auto lock = s->ContentLock(old_name);
      uint64_t size = 0;
      uint32_t crc = 0;
      DEPOT_RETURN_IF_ERROR(FileSizeAndCrc(old_full, &size, &crc));
      uint32_t ctime = binlog.BeginCreate();
      bool registered = true;
      Status linked;
      for (int attempt = 0; attempt < 5; ++attempt) {
        id.fields.source_ip = s->source_ip();
        id.fields.create_time = ctime;
        id.fields.size_word = proto::MakeSizeWord(size, false, RandomU64());
        id.fields.crc32 = crc;
        id.name = proto::EncodeNameFields(id.fields) + old.name.substr(proto::kFileNameB64Len);
        std::string full = p->FullPath(id.RelativePath());
        linked = link(old_full.c_str(), full.c_str()) == 0 ? Status::OK()
                                                           : Status::FromErrno(errno, "link", full);
        if (linked.code() != StatusCode::kAlreadyExists) break;
      }
      if (!linked.ok()) {
        binlog.AbortCreate(ctime);
        return linked.code() == StatusCode::kNotFound ? Status::NotFound("no such file:", old_name)
                                                      : linked;
      }
      std::string full = p->FullPath(id.RelativePath());
      std::string name = id.RemoteName();
      // The mtime of a normal file is the creation time in its name (storage_layout.md).
      timespec times[2] = {{0, UTIME_OMIT}, {static_cast<time_t>(ctime), 0}};
      utimensat(AT_FDCWD, full.c_str(), times, 0);
      Status done = [&]() -> Status {
        std::lock_guard<std::mutex> meta_lock(s->MetaLock("m/" + old_name));
        // A delete (which takes only the metadata lock) may have come in since the link.
        struct stat still;
        if (stat(old_full.c_str(), &still) != 0) {
          return Status::NotFound("deleted while it was regenerated:", old_name);
        }
        auto c = binlog.AppendOwn(kOpCreate, name, ctime);
        registered = false;
        if (!c.ok()) return c.status();
        auto meta = s->meta().Get("m/" + old_name);
        if (!meta.ok()) return meta.status();
        if (*meta) {
          DEPOT_RETURN_IF_ERROR(s->meta().Put("m/" + name, **meta));
          DEPOT_RETURN_IF_ERROR(s->meta().Put("mv/" + name, std::to_string(UnixNanos())));
          DEPOT_RETURN_IF_ERROR(binlog.AppendOwn(kOpMeta, name).status());
        }
        DEPOT_RETURN_IF_ERROR(s->meta().Put("t/" + old_name, std::to_string(UnixSeconds())));
        auto d = binlog.AppendOwn(kOpDelete, old_name);
        if (!d.ok()) return d.status();
        seq = d->seq;
        if (p->durable()) DEPOT_RETURN_IF_ERROR(binlog.Sync());
        if (unlink(old_full.c_str()) != 0) return Status::FromErrno(errno, "unlink", old_full);
        DEPOT_RETURN_IF_ERROR(s->meta().Delete("m/" + old_name));
        DEPOT_RETURN_IF_ERROR(s->meta().Delete("mv/" + old_name));
        if (p->durable()) DEPOT_RETURN_IF_ERROR(FsyncDir(DirName(full)));
        return Status::OK();
      }();
      if (registered) binlog.AbortCreate(ctime);
      if (!done.ok() && seq == 0) unlink(full.c_str());  // the old name still stands
      return done;
    }();
    if (!st.ok()) {
      DEPOT_LOG_WARN("regenerate {} from {}: {}", old_name, conn->peer(), st.ToString());
      return conn->PostReply(proto::StatusToWire(st));
    }
    s->replicator().AwaitQuorum(seq, [s, conn, id](Status q) {
      if (!q.ok()) return conn->PostReply(proto::StatusToWire(q));
      std::string out;
      proto::AppendFixed(&out, id.group, proto::kGroupNameLen);
      out += id.RemoteName();
      conn->PostReply(0, std::move(out));
    });
  });
}

}  // namespace

void RegisterAppender(StorageServer* s, net::FrameServer* fs) {
  auto reg_stream = [s, fs](uint8_t cmd, bool append) {
    net::CommandSpec spec;
    spec.max_body = 24 + proto::kMaxRemoteNameLen + s->config().max_file_size;
    spec.stream = [s, append](const ConnectionPtr&, const FrameHeader& h) {
      return std::make_unique<ChangeStream>(s, h.body_len, append);
    };
    fs->Register(cmd, spec);
  };
  reg_stream(proto::kStorageAppend, true);
  reg_stream(proto::kStorageModify, false);

  net::CommandSpec truncate;
  truncate.max_body = 16 + proto::kMaxRemoteNameLen;
  truncate.handle = [s](const ConnectionPtr& c, const FrameHeader&, std::string body) {
    Truncate(s, c, std::move(body));
  };
  fs->Register(proto::kStorageTruncate, truncate);

  net::CommandSpec regen;
  regen.max_body = proto::kMaxRemoteNameLen;
  regen.handle = [s](const ConnectionPtr& c, const FrameHeader&, std::string body) {
    Regenerate(s, c, std::move(body));
  };
  fs->Register(proto::kStorageRegenerateAppender, regen);
}

}  // namespace depot::storage
