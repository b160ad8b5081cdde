// fsck support (internal commands, doc/replication.md): LIST_FILES (230) lists the files and
// tombstones of one top-level data directory of a store path, optionally checking each file's
// content against the size and CRC32 in its name; REPAIR_FILE (231) copies one file from a peer
// (through the ordinary download command) and replaces this member's copy.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include "common/base/fs.h"
#include "common/base/hash.h"
#include "common/base/logging.h"
#include "common/net/blocking_conn.h"
#include "common/proto/sync.h"
#include "storage/replicator.h"
#include "storage/appender_io.h"
#include "storage/storage_server.h"
#include "storage/trunk.h"

namespace depot::storage {
namespace {

using net::ConnectionPtr;
using proto::FrameHeader;

Result<proto::ListFilesReply> ListFiles(StorageServer* s, StorePath* p,
                                        const proto::ListFilesRequest& req) {
  proto::ListFilesReply out;
  char top[32];
  std::snprintf(top, sizeof top, "M%02X/%02X/", req.store_path, req.dir1);
  for (int dir2 = 0; dir2 < 256; ++dir2) {
    std::string dir = p->FullPath(StorePath::DataPath(req.dir1, dir2, ""));
    std::vector<std::string> names = p->ListDir(req.dir1, dir2);
    char sub[8];
    std::snprintf(sub, sizeof sub, "%02X/", dir2);
    for (const auto& n : names) {
      proto::ListedFile f;
      f.name = std::string(top) + sub + n;
      std::string full = dir + n;  // dir ends with /
      struct stat st;
      if (stat(full.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      f.size = static_cast<uint64_t>(st.st_size);
      if (req.verify) {
        auto id = proto::ParseRemoteName(s->config().group_name, f.name);
        if (!id.ok()) {
          f.intact = false;
        } else if (!id->NamePinsContent()) {
          uint64_t size = 0;
          f.has_crc = FileSizeAndCrc(full, &size, &f.crc).ok();
          if (f.has_crc) f.size = size;
        } else if (!id->IsTrunk()) {
          f.intact = StorePath::FileMatches(full, proto::SizeFromWord(id->fields.size_word),
                                            id->fields.crc32);
        }
      }
      out.files.push_back(std::move(f));
    }
  }
  // Files in trunk slots whose file IDs name this directory.
  for (auto& [name, size] : p->trunk()->List(req.dir1)) {
    proto::ListedFile f;
    f.name = std::move(name);
    f.size = size;
    if (req.verify) {
      auto id = proto::ParseRemoteName(s->config().group_name, f.name);
      auto opened = id.ok() ? StorageServer::OpenFile(p, *id)
                            : Result<StorageServer::OpenedFile>(id.status());
      f.intact = false;
      if (opened.ok()) {
        std::string data(opened->size, '\0');
        ssize_t n = pread(opened->fd, data.data(), data.size(), static_cast<off_t>(opened->offset));
        f.intact = n == static_cast<ssize_t>(data.size()) && Crc32(data) == id->fields.crc32;
        close(opened->fd);
      }
    }
    out.files.push_back(std::move(f));
  }
  DEPOT_RETURN_IF_ERROR(s->meta().Scan("t/" + std::string(top), [&](const std::string& k,
                                                                     const std::string&) {
    out.deleted.push_back(k.substr(2));
  }));
  return out;
}

// Copies `id` from a peer into this member, replacing a bad or missing copy.
Status Repair(StorageServer* s, StorePath* p, const proto::FileId& id, const std::string& ip,
              int port) {
  std::string name = id.RemoteName();
  auto t = s->meta().Get("t/" + name);
  if (t.ok() && *t) return Status::InvalidArgument("the file was deleted on this member:", name);
  DEPOT_ASSIGN_OR_RETURN(auto conn, net::BlockingConn::Connect(ip, port, 3000));
  conn->set_timeout_ms(s->config().network_timeout * 1000);
  std::string req;
  proto::AppendU64(&req, 0);
  proto::AppendU64(&req, 0);
  proto::AppendFixed(&req, id.group, proto::kGroupNameLen);
  req += name;
  std::string frame = proto::EncodeFrame(proto::kStorageDownload, 0, req);
  DEPOT_RETURN_IF_ERROR(conn->SendAll(frame.data(), frame.size()));
  DEPOT_ASSIGN_OR_RETURN(auto h, conn->RecvHeader(s->config().max_file_size));
  if (h.status != 0) return proto::WireToStatus(h.status, "download from " + conn->address());
  StorePath::PendingFile file;
  std::string whole;  // a trunk file's bytes, written into its slot at once
  if (id.InTrunk()) {
    if (h.body_len + TrunkStore::kHeaderSize > id.trunk.alloc) {
      return Status::Corruption("the peer's copy is larger than its trunk slot:", name);
    }
  } else {
    DEPOT_ASSIGN_OR_RETURN(file, p->CreatePendingIn(id.dir1, id.dir2));
  }
  std::string buf(1 << 20, '\0');
  uint64_t left = h.body_len;
  uint32_t crc = 0;
  while (left > 0) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
    DEPOT_RETURN_IF_ERROR(conn->RecvExact(buf.data(), n));
    if (id.InTrunk()) {
      whole.append(buf.data(), n);
    } else {
      DEPOT_RETURN_IF_ERROR(WriteAll(file.fd, buf.data(), n, "repair"));
    }
    crc = Crc32Update(crc, buf.data(), n);
    left -= n;
  }
  if (id.NamePinsContent() &&
      (crc != id.fields.crc32 || h.body_len != proto::SizeFromWord(id.fields.size_word))) {
    return Status::Corruption("the peer's copy does not match its file ID either:", name);
  }
  if (id.InTrunk()) {
    auto content = s->ContentLock(name);
    std::lock_guard<std::mutex> l(s->MetaLock("m/" + name));
    auto again = s->meta().Get("t/" + name);
    if (again.ok() && *again) return Status::InvalidArgument("the file was deleted meanwhile:", name);
    DEPOT_RETURN_IF_ERROR(p->trunk()->WriteReplica(id, whole));
    auto r = s->replicator().binlog().AppendOwn(kOpCreate, name);
    if (!r.ok()) return r.status();
    DEPOT_LOG_INFO("fsck: repaired {} from {}:{}", name, ip, port);
    return Status::OK();
  }
  if (p->durable() && fdatasync(file.fd) != 0) return Status::FromErrno(errno, "fdatasync", name);
  {
    auto content = s->ContentLock(name);
    std::lock_guard<std::mutex> l(s->MetaLock("m/" + name));
    auto again = s->meta().Get("t/" + name);  // deleted while it downloaded?
    if (again.ok() && *again) return Status::InvalidArgument("the file was deleted meanwhile:", name);
    Status st = p->Publish(&file, id.name);
    if (st.code() == StatusCode::kAlreadyExists) {
      unlink(p->FullPath(id.RelativePath()).c_str());
      st = p->Publish(&file, id.name);
    }
    DEPOT_RETURN_IF_ERROR(st);
  }
  if (p->durable()) DEPOT_RETURN_IF_ERROR(FsyncDir(DirName(p->FullPath(id.RelativePath()))));
  // Recorded as this member's own create, so that peers (and dumps from here) get it too.
  auto r = s->replicator().binlog().AppendOwn(kOpCreate, name);
  if (!r.ok()) return r.status();
  DEPOT_LOG_INFO("fsck: repaired {} from {}:{}", name, ip, port);
  return Status::OK();
}

}  // namespace

void RegisterFsck(StorageServer* s, net::FrameServer* fs) {
  net::CommandSpec list;
  list.max_body = 4096;
  list.internal = true;
  list.handle = [s](const ConnectionPtr& c, const FrameHeader&, std::string body) {
    auto req = proto::DecodeListFilesRequest(body);
    if (!req.ok()) return c->ReplyStatus(req.status());
    if (static_cast<size_t>(req->store_path) >= s->paths().size()) return c->Reply(EINVAL);
    StorePath* p = s->paths()[static_cast<size_t>(req->store_path)].get();
    p->reader().Submit([s, p, c, r = *req] {
      auto out = ListFiles(s, p, r);
      if (!out.ok()) return c->PostReply(proto::StatusToWire(out.status()));
      c->PostReply(0, proto::EncodeListFilesReply(*out));
    });
  };
  fs->Register(proto::kDepotListFiles, list);

  net::CommandSpec repair;
  repair.max_body = 4096;
  repair.internal = true;
  repair.handle = [s](const ConnectionPtr& c, const FrameHeader&, std::string body) {
    auto req = proto::DecodeRepairRequest(body);
    if (!req.ok()) return c->ReplyStatus(req.status());
    auto id = proto::ParseRemoteName(s->config().group_name, req->name);
    if (!id.ok()) return c->ReplyStatus(id.status());
    auto path = s->PathForFile(*id);
    if (!path.ok()) return c->ReplyStatus(path.status());
    // On a reader thread: the download may take a while and must not hold up uploads.
    (*path)->reader().Submit([s, p = *path, c, id = *id, r = *req] {
      Status st = Repair(s, p, id, r.from_ip, r.from_port);
      if (!st.ok()) DEPOT_LOG_WARN("fsck repair of {}: {}", r.name, st.ToString());
      c->PostReply(proto::StatusToWire(st));
    });
  };
  fs->Register(proto::kDepotRepairFile, repair);
}

}  // namespace depot::storage
