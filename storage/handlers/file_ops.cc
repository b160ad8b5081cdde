// Delete (12) and query file info (22), both with a group16 + remote name body.
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/daemon.h"
#include "common/base/fs.h"
#include "common/base/hash.h"
#include "common/base/logging.h"
#include "storage/appender_io.h"
#include "storage/dedup.h"
#include "storage/replicator.h"
#include "storage/storage_server.h"

namespace depot::storage {
namespace {

using net::ConnectionPtr;
using proto::FrameHeader;

void Delete(StorageServer* s, const ConnectionPtr& conn, std::string body) {
  auto id = ParseGroupAndName(s, body);
  if (!id.ok()) return conn->Reply(EINVAL);
  auto path = s->PathForFile(*id);
  if (!path.ok()) return conn->Reply(EINVAL);
  StorePath* p = *path;
  std::string full = p->FullPath(id->RelativePath());
  std::string meta_key = "m/" + id->RemoteName();
  std::string name = id->RemoteName();
  p->writer().Submit([s, p, conn, fid = *id, full, meta_key, name] {
    std::unique_lock<std::mutex> lock(s->MetaLock(meta_key));
    if (!StorageServer::HasFile(p, fid)) {
      s->Count(proto::kCntDelete, false);
      return conn->PostReply(ENOENT);
    }
    // Recorded before the file goes: the tombstone keeps a late replicated copy from bringing the
    // file back, the binlog record carries the delete to the peers. A delete that could not be
    // recorded is not done.
    Status st = s->meta().Put("t/" + name, std::to_string(UnixSeconds()));
    if (st.ok()) st = s->replicator().binlog().AppendOwn(kOpDelete, name).status();
    if (st.ok() && p->durable()) st = s->replicator().binlog().Sync();
    if (st.ok()) {
      st = s->RemoveContent(p, fid);
      if (st.code() == StatusCode::kNotFound) st = Status::OK();
    }
    if (st.ok()) CrashPoint("dedup-delete-after-unlink");
    if (st.ok()) st = s->meta().Delete(meta_key);
    if (st.ok()) st = s->meta().Delete("mv/" + name);
    if (st.ok() && p->durable() && !fid.InTrunk()) st = FsyncDir(DirName(full));
    lock.unlock();
    if (st.ok()) {
      // Dedup: this name's reference leaves the index and the dht (a network call: not under
      // the metadata lock); the content goes with its last name (doc/dedup.md).
      s->dedup().Forget(p, name, /*release=*/true);
    }
    if (!st.ok()) {
      DEPOT_LOG_WARN("delete {}: {}", full, st.ToString());
      s->Count(proto::kCntDelete, false);
      return conn->PostReply(EIO);
    }
    s->Count(proto::kCntDelete, true);
    s->TouchSourceUpdate();
    conn->PostReply(0);
  });
}

void QueryInfo(StorageServer* s, const ConnectionPtr& conn, const FrameHeader& h,
               std::string body) {
  // The request header's status byte carries flags: bit 0 = do not compute the CRC32 (reply 0),
  // bit 1 = keep silent when missing (status still ENOENT).
  uint8_t flags = h.status;
  auto id = ParseGroupAndName(s, body);
  if (!id.ok()) return conn->Reply(EINVAL);
  auto path = s->PathForFile(*id);
  if (!path.ok()) return conn->Reply(EINVAL);
  StorePath* p = *path;
  std::string full = p->FullPath(id->RelativePath());
  proto::FileId fid = *id;
  p->reader().Submit([p, conn, full, fid, flags] {
    auto opened = StorageServer::OpenFile(p, fid);
    if (!opened.ok()) {
      return conn->PostReply(opened.status().code() == StatusCode::kNotFound ? ENOENT : EIO);
    }
    close(opened->fd);
    struct stat st {};
    st.st_size = static_cast<off_t>(opened->size);
    st.st_mtime = opened->mtime;
    // A normal file's name carries its creation time and CRC32. An appender file changes: its
    // time is its mtime (as FastDFS answers) and its CRC32 is computed now; a slave's name is
    // its master's, so its CRC32 is computed too.
    uint64_t ctime = fid.IsAppender() ? static_cast<uint64_t>(st.st_mtime) : fid.fields.create_time;
    uint32_t crc32 = fid.fields.crc32;
    if (!fid.NamePinsContent() && !(flags & 1)) {
      uint64_t size = 0;
      Status c = FileSizeAndCrc(full, &size, &crc32);
      if (!c.ok()) return conn->PostReply(c.code() == StatusCode::kNotFound ? ENOENT : EIO);
      st.st_size = static_cast<off_t>(size);
    }
    std::string out;
    proto::AppendU64(&out, static_cast<uint64_t>(st.st_size));
    proto::AppendU64(&out, ctime);
    // FastDFS sends the CRC32 as a sign-extended 64-bit integer.
    int64_t crc = (flags & 1) ? 0 : static_cast<int32_t>(crc32);
    proto::AppendU64(&out, static_cast<uint64_t>(crc));
    proto::AppendFixed(&out, proto::IpToString(fid.fields.source_ip), proto::kIpLen);
    conn->PostReply(0, std::move(out));
  });
}

}  // namespace

void RegisterFileOps(StorageServer* s, net::FrameServer* fs) {
  net::CommandSpec del;
  del.max_body = proto::kGroupNameLen + proto::kMaxRemoteNameLen;
  del.handle = [s](const ConnectionPtr& c, const FrameHeader&, std::string body) {
    Delete(s, c, std::move(body));
  };
  fs->Register(proto::kStorageDelete, del);
  net::CommandSpec info = del;
  info.handle = [s](const ConnectionPtr& c, const FrameHeader& h, std::string body) {
    QueryInfo(s, c, h, std::move(body));
  };
  fs->Register(proto::kStorageQueryFileInfo, info);
}

}  // namespace depot::storage
