// Upload (11): path_index1 + size8 + ext6 + the bytes; reply group16 + remote name.
// The body streams in chunks to an unnamed file (O_TMPFILE) in the current write directory, on
// the store path's writer threads; the CRC32 is computed on the way; at the end the file is
// named data/XX/YY/<name> with linkat (in a group commit when durable_writes is on) and only then
// acknowledged.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <mutex>

#include "common/base/fs.h"
#include "common/base/hash.h"
#include "common/base/logging.h"
#include "storage/replicator.h"
#include "storage/storage_server.h"

namespace depot::storage {
namespace {

using net::ConnectionPtr;
using proto::FrameHeader;

constexpr size_t kUploadPrefix = 1 + 8 + proto::kExtLen;

// One upload in progress. Shared between the loop (stream) and the disk threads; mu_ orders the
// disk work of one upload when a path has several writer threads.
class UploadJob : public std::enable_shared_from_this<UploadJob> {
 public:
  UploadJob(StorageServer* server, StorePath* path, uint64_t size, std::string ext)
      : server_(server), path_(path), size_(size), ext_(std::move(ext)) {}
  ~UploadJob() { StorePath::Discard(&file_); }

  Status Write(const std::string& data) {
    std::lock_guard<std::mutex> l(mu_);
    DEPOT_RETURN_IF_ERROR(OpenLocked());
    if (written_ + data.size() > size_) return Status::InvalidArgument("body longer than size");
    DEPOT_RETURN_IF_ERROR(WriteAll(file_.fd, data.data(), data.size(), "upload"));
    crc_ = Crc32Update(crc_, data.data(), data.size());
    written_ += data.size();
    return Status::OK();
  }

  // Runs on a writer thread after the last chunk.
  void Finish(const ConnectionPtr& conn) {
    std::unique_lock<std::mutex> l(mu_);
    Status s = OpenLocked();  // an empty file has had no Write()
    if (!s.ok()) return Fail(conn, s);
    if (written_ != size_) return Fail(conn, Status::InvalidArgument("body shorter than size"));
    l.unlock();
    Publish(conn, 0);
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

 private:
  Status OpenLocked() {
    if (aborted_) return Status::Unavailable("upload aborted");
    if (file_.fd >= 0) return Status::OK();
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
    id.group = server_->config().group_name;
    id.store_path = path_->index();
    id.dir1 = file_.dir1;
    id.dir2 = file_.dir2;
    uint64_t r = RandomU64();
    id.fields.source_ip = server_->source_ip();
    // Registered as in progress until its binlog record exists (read-routing watermarks).
    uint32_t ctime = binlog.BeginCreate();
    id.fields.create_time = ctime;
    id.fields.size_word = proto::MakeSizeWord(size_, false, r);
    id.fields.crc32 = crc_;
    id.name = proto::MakeFileName(id.fields, ext_, RandomU64());
    auto self = shared_from_this();
    // Runs once the name exists (on the commit thread, before its sync, when durable).
    auto named = [self, id, ctime]() -> Status {
      self->registration_used_ = true;  // AppendOwn ends the registration, failed or not
      auto rec = self->server_->replicator().binlog().AppendOwn(kOpCreate, id.RemoteName(), ctime);
      if (!rec.ok()) return rec.status();
      self->seq_ = rec->seq;
      return Status::OK();
    };
    self->registration_used_ = false;
    auto done = [self, conn, id, attempt, ctime](Status s) {
      if (!s.ok() && !self->registration_used_) {
        self->server_->replicator().binlog().AbortCreate(ctime);
      }
      if (s.code() == StatusCode::kAlreadyExists && attempt < 5) {
        return self->Publish(conn, attempt + 1);  // astronomically rare name clash: new name
      }
      if (!s.ok()) return self->FailUnlocked(conn, s);
      // replication = sync: acknowledged only once enough peers hold it.
      self->server_->replicator().AwaitQuorum(self->seq_, [self, conn, id](Status q) {
        if (!q.ok()) return self->Withdraw(conn, id, q);
        self->server_->Count(proto::kCntUpload, true);
        self->server_->Count(proto::kCntUploadBytes, true, static_cast<int64_t>(self->size_));
        self->server_->TouchSourceUpdate();
        std::string out;
        proto::AppendFixed(&out, id.group, proto::kGroupNameLen);
        out += id.RemoteName();
        conn->PostReply(0, std::move(out));
      });
    };
    if (path_->durable()) {
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

  // The write quorum was not reached: the upload fails and its file is deleted again (a delete
  // record follows the create, so peers that got a copy drop it too).
  void Withdraw(const ConnectionPtr& conn, const proto::FileId& id, const Status& why) {
    auto self = shared_from_this();
    path_->writer().Submit([self, conn, id, why] {
      std::string name = id.RemoteName();
      {
        std::lock_guard<std::mutex> l(self->server_->MetaLock("m/" + name));
        unlink(self->path_->FullPath(id.RelativePath()).c_str());
        (void)self->server_->meta().Put("t/" + name, std::to_string(UnixSeconds()));
        auto rec = self->server_->replicator().binlog().AppendOwn(kOpDelete, name);
        if (!rec.ok()) DEPOT_LOG_WARN("upload withdraw {}: {}", name, rec.status().ToString());
      }
      self->FailUnlocked(conn, why);
    });
  }

  StorageServer* server_;
  StorePath* path_;
  uint64_t size_;
  std::string ext_;
  std::mutex mu_;
  StorePath::PendingFile file_;  // GUARDED_BY(mu_)
  uint32_t crc_ = 0;             // GUARDED_BY(mu_)
  uint64_t written_ = 0;         // GUARDED_BY(mu_)
  bool aborted_ = false;         // GUARDED_BY(mu_)
  bool committing_ = false;      // GUARDED_BY(mu_): file_ is with the commit thread
  std::atomic<uint64_t> seq_{0};  // the create's binlog record
  std::atomic<bool> registration_used_{false};  // named() ended the BeginCreate registration
};

class UploadStream : public net::BodyStream {
 public:
  UploadStream(StorageServer* s, uint64_t body_len) : server_(s), body_len_(body_len) {}

  void OnChunk(const ConnectionPtr& conn, std::string chunk, bool last) override {
    if (!job_) {
      size_t take = std::min(kUploadPrefix - prefix_.size(), chunk.size());
      prefix_.append(chunk, 0, take);
      chunk.erase(0, take);
      if (prefix_.size() < kUploadPrefix) {
        if (last) return conn->Reply(EINVAL);
        return conn->ContinueBody();
      }
      uint8_t path_index = static_cast<uint8_t>(prefix_[0]);
      uint64_t size = proto::GetU64(prefix_.data() + 1);
      std::string ext(proto::TrimFixed(std::string_view(prefix_).substr(9, proto::kExtLen)));
      if (size != body_len_ - kUploadPrefix || !proto::ValidateExt(ext).ok()) {
        server_->Count(proto::kCntUpload, false);
        return conn->Reply(EINVAL);
      }
      if (Status q = server_->replicator().CheckQuorumPossible(); !q.ok()) {
        DEPOT_LOG_WARN("upload from {} refused: {}", conn->peer(), q.ToString());
        server_->Count(proto::kCntUpload, false);
        return conn->ReplyStatus(q);
      }
      auto path = server_->PathForUpload(path_index, size);
      if (!path.ok()) {
        DEPOT_LOG_WARN("upload from {} refused: {}", conn->peer(), path.status().ToString());
        server_->Count(proto::kCntUpload, false);
        return conn->ReplyStatus(path.status());
      }
      (*path)->Consume(static_cast<int64_t>(size));
      job_ = std::make_shared<UploadJob>(server_, *path, size, ext);
      path_ = *path;
    }
    auto job = job_;
    path_->writer().Submit([job, conn, chunk = std::move(chunk), last] {
      Status s = chunk.empty() ? Status::OK() : job->Write(chunk);
      if (!s.ok()) return job->FailUnlocked(conn, s);
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
  StorageServer* server_;
  uint64_t body_len_;
  std::string prefix_;
  std::shared_ptr<UploadJob> job_;
  StorePath* path_ = nullptr;
};

}  // namespace

void RegisterUpload(StorageServer* s, net::FrameServer* fs) {
  net::CommandSpec upload;
  upload.max_body = kUploadPrefix + s->config().max_file_size;
  upload.stream = [s](const ConnectionPtr&, const FrameHeader& h) {
    return std::make_unique<UploadStream>(s, h.body_len);
  };
  fs->Register(proto::kStorageUpload, upload);
}

}  // namespace depot::storage
