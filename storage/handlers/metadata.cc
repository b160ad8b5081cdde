// Set metadata (13): name_len8 + meta_len8 + flag1 ('O' overwrite, 'M' merge) + group16 + name +
// meta; get metadata (15): group16 + name. Metadata lives in the storage's LevelDB
// (doc/storage-layout.md); a file without metadata answers ENOENT, as FastDFS does.
#include <sys/stat.h>

#include "common/base/logging.h"
#include "common/base/hash.h"
#include "storage/replicator.h"
#include "storage/storage_server.h"

namespace depot::storage {
namespace {

using net::ConnectionPtr;
using proto::FrameHeader;

constexpr uint64_t kMaxMetaBytes = 1 << 20;

void SetMeta(StorageServer* s, const ConnectionPtr& conn, std::string body) {
  constexpr size_t kFixed = 8 + 8 + 1 + proto::kGroupNameLen;
  if (body.size() < kFixed) return conn->Reply(EINVAL);
  uint64_t name_len = proto::GetU64(body.data());
  uint64_t meta_len = proto::GetU64(body.data() + 8);
  char flag = body[16];
  if (name_len == 0 || name_len > proto::kMaxRemoteNameLen || meta_len > kMaxMetaBytes ||
      body.size() != kFixed + name_len + meta_len || (flag != 'O' && flag != 'M')) {
    s->Count(proto::kCntSetMeta, false);
    return conn->Reply(EINVAL);
  }
  std::string group(proto::TrimFixed(std::string_view(body).substr(17, proto::kGroupNameLen)));
  auto id = proto::ParseRemoteName(group, std::string_view(body).substr(kFixed, name_len));
  if (!id.ok()) return conn->Reply(EINVAL);
  auto path = s->PathForFile(*id);
  if (!path.ok()) return conn->Reply(EINVAL);
  auto meta = ParseMeta(std::string_view(body).substr(kFixed + name_len));
  if (!meta.ok()) {
    s->Count(proto::kCntSetMeta, false);
    return conn->Reply(EINVAL);
  }
  StorePath* p = *path;
  std::string key = "m/" + id->RemoteName();
  p->writer().Submit([s, p, fid = *id, conn, key, flag, meta = std::move(*meta)]() mutable {
    std::lock_guard<std::mutex> lock(s->MetaLock(key));
    if (!StorageServer::HasFile(p, fid)) {
      s->Count(proto::kCntSetMeta, false);
      return conn->PostReply(ENOENT);
    }
    if (flag == 'M') {
      auto old = s->meta().Get(key);
      if (!old.ok()) return conn->PostReply(EIO);
      if (*old) {
        auto merged = ParseMeta(**old);
        if (merged.ok()) {
          for (auto& [k, v] : meta) (*merged)[k] = v;
          meta = std::move(*merged);
        }
      }
    }
    Status r = meta.empty() ? s->meta().Delete(key) : s->meta().Put(key, EncodeMeta(meta));
    // A version per change (last writer wins between members), then the binlog record.
    std::string name = key.substr(2);
    if (r.ok()) {
      auto old = s->meta().Get("mv/" + name);
      uint64_t prev = old.ok() && *old ? std::strtoull((*old)->c_str(), nullptr, 10) : 0;
      uint64_t version = std::max<uint64_t>(prev + 1, static_cast<uint64_t>(UnixNanos()));
      r = s->meta().Put("mv/" + name, std::to_string(version));
    }
    if (r.ok()) r = s->replicator().binlog().AppendOwn(kOpMeta, name).status();
    if (r.ok() && s->config().durable_writes) r = s->replicator().binlog().Sync();
    s->Count(proto::kCntSetMeta, r.ok());
    if (r.ok()) s->TouchSourceUpdate();
    conn->PostReply(proto::StatusToWire(r));
  });
}

void GetMeta(StorageServer* s, const ConnectionPtr& conn, std::string body) {
  auto id = ParseGroupAndName(s, body);
  if (!id.ok()) return conn->Reply(EINVAL);
  auto path = s->PathForFile(*id);
  if (!path.ok()) return conn->Reply(EINVAL);
  StorePath* p = *path;
  std::string key = "m/" + id->RemoteName();
  p->reader().Submit([s, p, fid = *id, conn, key] {
    if (!StorageServer::HasFile(p, fid)) {
      s->Count(proto::kCntGetMeta, false);
      return conn->PostReply(ENOENT);
    }
    auto v = s->meta().Get(key);
    if (!v.ok()) return conn->PostReply(EIO);
    s->Count(proto::kCntGetMeta, v->has_value());
    if (!*v) return conn->PostReply(ENOENT);
    conn->PostReply(0, std::move(**v));
  });
}

}  // namespace

void RegisterMetadata(StorageServer* s, net::FrameServer* fs) {
  net::CommandSpec set;
  set.max_body = 8 + 8 + 1 + proto::kGroupNameLen + proto::kMaxRemoteNameLen + kMaxMetaBytes;
  set.handle = [s](const ConnectionPtr& c, const FrameHeader&, std::string body) {
    SetMeta(s, c, std::move(body));
  };
  fs->Register(proto::kStorageSetMeta, set);
  net::CommandSpec get;
  get.max_body = proto::kGroupNameLen + proto::kMaxRemoteNameLen;
  get.handle = [s](const ConnectionPtr& c, const FrameHeader&, std::string body) {
    GetMeta(s, c, std::move(body));
  };
  fs->Register(proto::kStorageGetMeta, get);
}

}  // namespace depot::storage
