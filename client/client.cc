#include "depot/client.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <initializer_list>
#include <optional>

#include <nlohmann/json.hpp>

#include "common/base/conf.h"
#include "common/base/fs.h"
#include "common/net/blocking_conn.h"
#include "common/proto/file_id.h"
#include "common/proto/metadata.h"
#include "common/proto/protocol.h"
#include "common/proto/stat_records.h"

namespace depot {

using net::BlockingConn;

Result<ClientOptions> LoadClientOptions(const std::string& path) {
  DEPOT_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path));
  DEPOT_ASSIGN_OR_RETURN(ConfFile file, ConfFile::Parse(text, path));
  ClientOptions o;
  int connect_s = 5, network_s = 30;
  ConfBinder b(file);
  b.Repeated("tracker_server", &o.trackers);
  b.Seconds("connect_timeout", &connect_s, 1, 600);
  b.Seconds("network_timeout", &network_s, 1, 3600);
  b.String("cluster_secret", &o.cluster_secret);
  for (const auto& t : o.trackers) {
    std::string h;
    int p;
    if (!ParseHostPort(t, &h, &p).ok()) b.Fail("tracker_server", "expected host:port: " + t);
  }
  DEPOT_RETURN_IF_ERROR(b.Finish());
  o.connect_timeout_ms = connect_s * 1000;
  o.network_timeout_ms = network_s * 1000;
  return o;
}

namespace {

constexpr size_t kChunk = 256 * 1024;

struct ParsedId {
  proto::FileId id;
  std::string group_and_name;  // group16 + remote name, the body of many requests
};

Result<ParsedId> Parse(const std::string& file_id) {
  auto id = proto::ParseFileId(file_id);
  if (!id.ok()) return id.status().WithContext("file ID `" + file_id + "`");
  ParsedId p{*id, {}};
  proto::AppendFixed(&p.group_and_name, p.id.group, proto::kGroupNameLen);
  p.group_and_name += p.id.RemoteName();
  return p;
}

}  // namespace

class Client::Impl {
 public:
  explicit Impl(ClientOptions o)
      : opt_(std::move(o)), pool_(opt_.connect_timeout_ms, opt_.network_timeout_ms) {}

  const ClientOptions& options() const { return opt_; }

  Status Init() {
    if (opt_.trackers.empty()) return Status::InvalidArgument("no tracker configured");
    for (const auto& t : opt_.trackers) {
      std::string host;
      int port;
      DEPOT_RETURN_IF_ERROR(ParseHostPort(t, &host, &port));
      trackers_.emplace_back(host, port);
    }
    return Status::OK();
  }

  // Runs `fn` on a connection to host:port. When a pooled connection turns out to be dead before
  // any reply byte arrived (`fn` leaves `*consumed` false), retries once on a new connection.
  template <typename Fn>
  Status WithConn(const std::string& host, int port, Fn&& fn) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      bool reused = false;
      auto conn = pool_.Acquire(host, port, attempt == 0 ? &reused : nullptr);
      if (!conn.ok()) return conn.status();
      bool consumed = false;
      Status s = fn(**conn, &consumed);
      bool healthy = (*conn)->healthy();
      pool_.Release(std::move(*conn));
      // Retry only a connection that was found closed (never a timeout: the server may still
      // be working on the request, and a retried upload or delete must not run twice).
      if (s.ok() || healthy || consumed || !reused || s.code() != StatusCode::kUnavailable) {
        return s;
      }
      pool_.Forget(host, port);  // its siblings are probably stale too
    }
    return Status::Internal("unreachable");
  }

  Result<net::Reply> SmallCall(const std::string& host, int port, uint8_t cmd,
                               std::string_view body, uint64_t max_reply, uint8_t status = 0) {
    net::Reply out;
    Status s = WithConn(host, port, [&](BlockingConn& c, bool* consumed) -> Status {
      auto r = c.Call(cmd, body, max_reply, status);
      if (!r.ok()) return r.status();
      *consumed = true;
      out = std::move(*r);
      return Status::OK();
    });
    if (!s.ok()) return s;
    return out;
  }

  // Asks the trackers in turn, starting with the next one in rotation, until one answers. An
  // answer with a status in `ask_others_on` is returned only when no other tracker answers
  // better: a tracker that has just restarted knows no storage until they join it again, and
  // would turn a client away (ENOENT, ENOSPC) where its peers would not.
  Result<net::Reply> TrackerCall(uint8_t cmd, std::string_view body, uint64_t max_reply,
                                 std::initializer_list<uint8_t> ask_others_on = {}) {
    Status last;
    std::optional<net::Reply> kept;
    size_t start = next_tracker_++;
    for (size_t i = 0; i < trackers_.size(); ++i) {
      const auto& [host, port] = trackers_[(start + i) % trackers_.size()];
      auto r = SmallCall(host, port, cmd, body, max_reply);
      if (!r.ok()) {
        last = r.status();
        continue;
      }
      if (std::find(ask_others_on.begin(), ask_others_on.end(), r->status) == ask_others_on.end()) {
        return r;
      }
      if (!kept) kept = std::move(*r);
    }
    if (kept) return std::move(*kept);
    return Status::Unavailable("no tracker answered", "(last error: " + last.ToString() + ")");
  }

  Result<StorageNode> ParseNode(const net::Reply& r, bool with_path, const char* what) {
    if (r.status != 0) return proto::WireToStatus(r.status, what);
    size_t want = proto::kGroupNameLen + proto::kQueryIpLen + 8 + (with_path ? 1 : 0);
    if (r.body.size() < want)
      return Status::Corruption(std::string(what) + ": short tracker reply");
    StorageNode n;
    n.group = std::string(proto::TrimFixed(std::string_view(r.body).substr(0, 16)));
    n.ip = std::string(proto::TrimFixed(std::string_view(r.body).substr(16, proto::kQueryIpLen)));
    n.port = static_cast<int>(proto::GetU64(r.body.data() + 16 + proto::kQueryIpLen));
    if (with_path) n.store_path = static_cast<unsigned char>(r.body[want - 1]);
    return n;
  }

  Result<StorageNode> QueryStore(const std::string& group) {
    std::string body;
    uint8_t cmd = proto::kTrackerQueryStoreNoGroupOne;
    if (!group.empty()) {
      DEPOT_RETURN_IF_ERROR(proto::ValidateGroupName(group));
      proto::AppendFixed(&body, group, proto::kGroupNameLen);
      cmd = proto::kTrackerQueryStoreWithGroupOne;
    }
    DEPOT_ASSIGN_OR_RETURN(net::Reply r, TrackerCall(cmd, body, 1024, {ENOENT, ENOSPC}));
    return ParseNode(r, true, "query store");
  }

  Result<StorageNode> QueryFile(const ParsedId& p, uint8_t cmd) {
    DEPOT_ASSIGN_OR_RETURN(net::Reply r, TrackerCall(cmd, p.group_and_name, 1 << 16, {ENOENT}));
    return ParseNode(r, false, cmd == proto::kTrackerQueryUpdate ? "query update" : "query fetch");
  }

  // Sends `head` then `size` body bytes from `send_body` to the storage at `node` as command
  // `cmd`, and reads the reply (at most `max_reply` bytes). The request is never sent twice once
  // its first byte went out.
  Result<net::Reply> BodyCall(const StorageNode& node, uint8_t cmd, const std::string& head,
                              uint64_t size, const std::function<Status(BlockingConn&)>& send_body,
                              uint64_t max_reply, bool* connected) {
    net::Reply out;
    Status s = WithConn(node.ip, node.port, [&](BlockingConn& c, bool* consumed) -> Status {
      *connected = true;
      std::string prefix(proto::kHeaderSize, '\0');
      proto::EncodeHeader({head.size() + size, cmd, 0}, prefix.data());
      prefix += head;
      DEPOT_RETURN_IF_ERROR(c.SendAll(prefix.data(), prefix.size()));
      // From here on the storage may act on it: never send it a second time.
      *consumed = true;
      Status sent = send_body ? send_body(c) : Status::OK();
      if (!sent.ok()) {
        // The server may have answered early (and closed): its status explains better.
        auto h = c.RecvHeader(max_reply);
        if (h.ok() && h->status != 0) {
          c.MarkBroken();
          out.status = h->status;
          return Status::OK();
        }
        return sent;
      }
      DEPOT_ASSIGN_OR_RETURN(proto::FrameHeader h, c.RecvHeader(max_reply));
      out.status = h.status;
      out.body.assign(h.body_len, '\0');
      return c.RecvExact(out.body.data(), out.body.size());
    });
    if (!s.ok()) return s;
    return out;
  }

  static Result<std::string> FileIdFromReply(const net::Reply& r, const std::string& what) {
    DEPOT_RETURN_IF_ERROR(proto::WireToStatus(r.status, what));
    if (r.body.size() <= proto::kGroupNameLen) return Status::Corruption("short " + what + " reply");
    return std::string(proto::TrimFixed(std::string_view(r.body).substr(0, 16))) + "/" +
           r.body.substr(proto::kGroupNameLen);
  }

  // Uploads (11, or 23 for an appender file) `size` bytes from `send_body`.
  Result<std::string> Upload(const UploadOptions& opts, uint64_t size,
                             const std::function<Status(BlockingConn&)>& send_body,
                             bool appender = false) {
    DEPOT_RETURN_IF_ERROR(proto::ValidateExt(opts.ext));
    std::string file_id;
    StorageNode node;
    Result<net::Reply> r = Status::Internal("no attempt");
    // A storage that died a moment ago may still be handed out by a tracker that has not noticed:
    // when it cannot even be connected to, ask the tracker again (once).
    for (int attempt = 0; attempt < 2; ++attempt) {
      DEPOT_ASSIGN_OR_RETURN(node, QueryStore(opts.group));
      std::string head;
      head.push_back(static_cast<char>(node.store_path));
      proto::AppendU64(&head, size);
      proto::AppendFixed(&head, opts.ext, proto::kExtLen);
      bool connected = false;
      r = BodyCall(node, appender ? proto::kStorageUploadAppender : proto::kStorageUpload, head,
                   size, send_body, proto::kGroupNameLen + proto::kMaxRemoteNameLen, &connected);
      if (r.ok() || connected) break;
    }
    if (!r.ok()) return r.status();
    DEPOT_ASSIGN_OR_RETURN(file_id, FileIdFromReply(*r, "upload to " + node.ip + ":" +
                                                            std::to_string(node.port)));
    return WithMeta(node, file_id, opts.meta);
  }

  // Sets the metadata of a file just uploaded; removes the file when that fails (the caller gets
  // an error and no file ID: no orphan is left behind).
  Result<std::string> WithMeta(const StorageNode& node, const std::string& file_id,
                               const std::map<std::string, std::string>& meta) {
    if (meta.empty()) return file_id;
    DEPOT_ASSIGN_OR_RETURN(ParsedId p, Parse(file_id));
    Status m = SetMetaOn(node, p, meta, false);
    if (!m.ok()) {
      (void)SmallCall(node.ip, node.port, proto::kStorageDelete, p.group_and_name, 0);
      return m.WithContext("upload " + file_id + " stored but its metadata failed; removed");
    }
    return file_id;
  }

  // Upload slave (21): master_len8 + size8 + prefix16 + ext6 + master name + the bytes, to the
  // master's storage.
  Result<std::string> UploadSlave(const std::string& master_id, const std::string& prefix,
                                  const UploadOptions& opts, uint64_t size,
                                  const std::function<Status(BlockingConn&)>& send_body) {
    DEPOT_RETURN_IF_ERROR(proto::ValidateExt(opts.ext));
    DEPOT_RETURN_IF_ERROR(proto::ValidatePrefix(prefix));
    DEPOT_ASSIGN_OR_RETURN(ParsedId m, Parse(master_id));
    DEPOT_ASSIGN_OR_RETURN(StorageNode node, QueryFile(m, proto::kTrackerQueryUpdate));
    std::string remote = m.id.RemoteName();
    std::string head;
    proto::AppendU64(&head, remote.size());
    proto::AppendU64(&head, size);
    proto::AppendFixed(&head, prefix, proto::kPrefixLen);
    proto::AppendFixed(&head, opts.ext, proto::kExtLen);
    head += remote;
    bool connected = false;
    DEPOT_ASSIGN_OR_RETURN(net::Reply r, BodyCall(node, proto::kStorageUploadSlave, head, size,
                                                  send_body, 1024, &connected));
    DEPOT_ASSIGN_OR_RETURN(std::string file_id, FileIdFromReply(r, "upload slave of " + master_id));
    return WithMeta(node, file_id, opts.meta);
  }

  // Append (24) or modify (34) of an appender file.
  Status Change(const std::string& file_id, bool append, uint64_t offset, uint64_t size,
                const std::function<Status(BlockingConn&)>& send_body) {
    DEPOT_ASSIGN_OR_RETURN(ParsedId p, Parse(file_id));
    DEPOT_ASSIGN_OR_RETURN(StorageNode node, QueryFile(p, proto::kTrackerQueryUpdate));
    std::string remote = p.id.RemoteName();
    std::string head;
    proto::AppendU64(&head, remote.size());
    if (!append) proto::AppendU64(&head, offset);
    proto::AppendU64(&head, size);
    head += remote;
    bool connected = false;
    DEPOT_ASSIGN_OR_RETURN(net::Reply r,
                           BodyCall(node, append ? proto::kStorageAppend : proto::kStorageModify,
                                    head, size, send_body, 1024, &connected));
    return proto::WireToStatus(r.status, (append ? "append to " : "modify ") + file_id);
  }

  Status SetMetaOn(const StorageNode& node, const ParsedId& p,
                   const std::map<std::string, std::string>& meta, bool merge) {
    for (const auto& [k, v] : meta) DEPOT_RETURN_IF_ERROR(proto::ValidateMetaEntry(k, v));
    std::string m = proto::EncodeMeta(meta);
    std::string remote = p.id.RemoteName();
    std::string body;
    proto::AppendU64(&body, remote.size());
    proto::AppendU64(&body, m.size());
    body.push_back(merge ? 'M' : 'O');
    proto::AppendFixed(&body, p.id.group, proto::kGroupNameLen);
    body += remote;
    body += m;
    DEPOT_ASSIGN_OR_RETURN(net::Reply r,
                           SmallCall(node.ip, node.port, proto::kStorageSetMeta, body, 0));
    return proto::WireToStatus(r.status, "set metadata");
  }

  ClientOptions opt_;
  net::ConnPool pool_;
  std::vector<std::pair<std::string, int>> trackers_;
  std::atomic<size_t> next_tracker_{0};
};

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

Result<std::unique_ptr<Client>> Client::Create(ClientOptions options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  DEPOT_RETURN_IF_ERROR(impl->Init());
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

const ClientOptions& Client::options() const { return impl_->options(); }

Result<StorageNode> Client::QueryStore(const std::string& group) {
  return impl_->QueryStore(group);
}

Result<StorageNode> Client::QueryFetch(const std::string& file_id) {
  DEPOT_ASSIGN_OR_RETURN(ParsedId p, Parse(file_id));
  return impl_->QueryFile(p, proto::kTrackerQueryFetchOne);
}

Result<StorageNode> Client::QueryUpdate(const std::string& file_id) {
  DEPOT_ASSIGN_OR_RETURN(ParsedId p, Parse(file_id));
  return impl_->QueryFile(p, proto::kTrackerQueryUpdate);
}

namespace {

// An open local file to send as a request body.
class LocalFile {
 public:
  ~LocalFile() {
    if (fd_ >= 0) close(fd_);
  }
  Status Open(const std::string& path) {
    path_ = path;
    fd_ = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) return Status::FromErrno(errno, "open", path);
    struct stat st;
    if (fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
      return Status::InvalidArgument("not a regular file:", path);
    }
    size_ = static_cast<uint64_t>(st.st_size);
    return Status::OK();
  }
  uint64_t size() const { return size_; }
  // Sends the whole file with sendfile, reporting progress.
  std::function<Status(BlockingConn&)> Sender(const ProgressFn& progress) {
    return [this, progress](BlockingConn& c) -> Status {
      if (lseek(fd_, 0, SEEK_SET) != 0) return Status::FromErrno(errno, "seek", path_);
      uint64_t sent = 0;
      while (sent < size_) {
        uint64_t n = std::min<uint64_t>(size_ - sent, 4 << 20);
        DEPOT_RETURN_IF_ERROR(c.SendFromFile(fd_, n));
        sent += n;
        if (progress) progress(sent, size_);
      }
      return Status::OK();
    };
  }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

std::function<Status(BlockingConn&)> BufferSender(std::string_view data) {
  return [data](BlockingConn& c) { return c.SendAll(data.data(), data.size()); };
}

}  // namespace

Result<std::string> Client::UploadFile(const std::string& path, const UploadOptions& opts,
                                       const ProgressFn& progress) {
  LocalFile f;
  DEPOT_RETURN_IF_ERROR(f.Open(path));
  return impl_->Upload(opts, f.size(), f.Sender(progress));
}

Result<std::string> Client::UploadBuffer(std::string_view data, const UploadOptions& opts) {
  return impl_->Upload(opts, data.size(), BufferSender(data));
}

Result<std::string> Client::UploadStream(uint64_t size, const ReadFn& read,
                                         const UploadOptions& opts) {
  return impl_->Upload(opts, size, [&](BlockingConn& c) -> Status {
    std::string buf(kChunk, '\0');
    uint64_t sent = 0;
    while (sent < size) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, size - sent));
      Result<size_t> n = read(buf.data(), want);
      if (!n.ok() || *n == 0 || *n > want) {
        // The storage server would wait for the rest of the body: end it, so that it drops the
        // partial upload and closes at once instead of after its network timeout.
        shutdown(c.fd(), SHUT_WR);
        c.MarkBroken();
        if (!n.ok()) return n.status();
        return Status::InvalidArgument("upload source ended early:",
                                       std::to_string(sent) + " of " + std::to_string(size));
      }
      DEPOT_RETURN_IF_ERROR(c.SendAll(buf.data(), *n));
      sent += *n;
    }
    return Status::OK();
  });
}

Result<std::string> Client::UploadAppenderFile(const std::string& path, const UploadOptions& opts,
                                               const ProgressFn& progress) {
  LocalFile f;
  DEPOT_RETURN_IF_ERROR(f.Open(path));
  return impl_->Upload(opts, f.size(), f.Sender(progress), /*appender=*/true);
}

Result<std::string> Client::UploadAppenderBuffer(std::string_view data, const UploadOptions& opts) {
  return impl_->Upload(opts, data.size(), BufferSender(data), /*appender=*/true);
}

Status Client::AppendFile(const std::string& file_id, const std::string& path,
                          const ProgressFn& progress) {
  LocalFile f;
  DEPOT_RETURN_IF_ERROR(f.Open(path));
  return impl_->Change(file_id, true, 0, f.size(), f.Sender(progress));
}

Status Client::AppendBuffer(const std::string& file_id, std::string_view data) {
  return impl_->Change(file_id, true, 0, data.size(), BufferSender(data));
}

Status Client::ModifyFile(const std::string& file_id, uint64_t offset, const std::string& path,
                          const ProgressFn& progress) {
  LocalFile f;
  DEPOT_RETURN_IF_ERROR(f.Open(path));
  return impl_->Change(file_id, false, offset, f.size(), f.Sender(progress));
}

Status Client::ModifyBuffer(const std::string& file_id, uint64_t offset, std::string_view data) {
  return impl_->Change(file_id, false, offset, data.size(), BufferSender(data));
}

Status Client::Truncate(const std::string& file_id, uint64_t size) {
  DEPOT_ASSIGN_OR_RETURN(ParsedId p, Parse(file_id));
  DEPOT_ASSIGN_OR_RETURN(StorageNode node, impl_->QueryFile(p, proto::kTrackerQueryUpdate));
  std::string remote = p.id.RemoteName();
  std::string body;
  proto::AppendU64(&body, remote.size());
  proto::AppendU64(&body, size);
  body += remote;
  DEPOT_ASSIGN_OR_RETURN(net::Reply r, impl_->SmallCall(node.ip, node.port,
                                                        proto::kStorageTruncate, body, 1024));
  return proto::WireToStatus(r.status, "truncate " + file_id);
}

Result<std::string> Client::RegenerateAppender(const std::string& file_id) {
  DEPOT_ASSIGN_OR_RETURN(ParsedId p, Parse(file_id));
  DEPOT_ASSIGN_OR_RETURN(StorageNode node, impl_->QueryFile(p, proto::kTrackerQueryUpdate));
  DEPOT_ASSIGN_OR_RETURN(net::Reply r,
                         impl_->SmallCall(node.ip, node.port, proto::kStorageRegenerateAppender,
                                          p.id.RemoteName(), 1024));
  return Impl::FileIdFromReply(r, "regenerate " + file_id);
}

Result<std::string> Client::UploadSlaveFile(const std::string& master_id,
                                            const std::string& prefix, const std::string& path,
                                            const UploadOptions& opts, const ProgressFn& progress) {
  LocalFile f;
  DEPOT_RETURN_IF_ERROR(f.Open(path));
  return impl_->UploadSlave(master_id, prefix, opts, f.size(), f.Sender(progress));
}

Result<std::string> Client::UploadSlaveBuffer(const std::string& master_id,
                                              const std::string& prefix, std::string_view data,
                                              const UploadOptions& opts) {
  return impl_->UploadSlave(master_id, prefix, opts, data.size(), BufferSender(data));
}

Result<std::string> SlaveFileId(const std::string& master_id, const std::string& prefix,
                                const std::string& ext) {
  DEPOT_ASSIGN_OR_RETURN(proto::FileId m, proto::ParseFileId(master_id));
  DEPOT_ASSIGN_OR_RETURN(std::string name, proto::MakeSlaveName(m, prefix, ext));
  m.name = std::move(name);
  return m.ToString();
}

Status Client::DownloadToSink(const std::string& file_id, uint64_t offset, uint64_t length,
                              const SinkFn& sink) {
  return DownloadSized(file_id, offset, length,
                       [&](const char* data, size_t n, uint64_t) { return sink(data, n); });
}

Status Client::DownloadSized(const std::string& file_id, uint64_t offset, uint64_t length,
                             const SizedSink& sink) {
  DEPOT_ASSIGN_OR_RETURN(ParsedId p, Parse(file_id));
  DEPOT_ASSIGN_OR_RETURN(StorageNode node, impl_->QueryFile(p, proto::kTrackerQueryFetchOne));
  std::string body;
  proto::AppendU64(&body, offset);
  proto::AppendU64(&body, length);
  body += p.group_and_name;
  return impl_->WithConn(node.ip, node.port, [&](BlockingConn& c, bool* consumed) -> Status {
    std::string frame = proto::EncodeFrame(proto::kStorageDownload, 0, body);
    DEPOT_RETURN_IF_ERROR(c.SendAll(frame.data(), frame.size()));
    DEPOT_ASSIGN_OR_RETURN(proto::FrameHeader h, c.RecvHeader(UINT64_MAX >> 1));
    *consumed = true;
    if (h.status != 0) {
      if (h.body_len != 0) c.MarkBroken();
      return proto::WireToStatus(h.status, "download " + file_id);
    }
    if (length != 0 && h.body_len > length) {
      c.MarkBroken();
      return Status::Corruption("storage sent more than asked for", c.address());
    }
    std::string buf(kChunk, '\0');
    uint64_t got = 0;
    while (got < h.body_len) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, h.body_len - got));
      DEPOT_RETURN_IF_ERROR(c.RecvExact(buf.data(), n));
      got += n;
      Status w = sink(buf.data(), n, h.body_len);
      if (!w.ok()) {
        c.MarkBroken();
        return w;
      }
    }
    return Status::OK();
  });
}

Status Client::DownloadToFd(const std::string& file_id, int fd, uint64_t offset, uint64_t length,
                            const ProgressFn& progress) {
  uint64_t done = 0;
  Status s = DownloadSized(file_id, offset, length,
                           [&](const char* data, size_t n, uint64_t total) -> Status {
                             DEPOT_RETURN_IF_ERROR(WriteAll(fd, data, n, "download destination"));
                             done += n;
                             if (progress) progress(done, total);
                             return Status::OK();
                           });
  if (s.ok() && progress && done == 0) progress(0, 0);
  return s;
}

Status Client::DownloadToFile(const std::string& file_id, const std::string& path,
                              const ProgressFn& progress) {
  std::string tmp = path + ".depot-part";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::FromErrno(errno, "create", tmp);
  Status s = DownloadToFd(file_id, fd, 0, 0, progress);
  if (close(fd) != 0 && s.ok()) s = Status::FromErrno(errno, "close", tmp);
  if (s.ok() && rename(tmp.c_str(), path.c_str()) != 0)
    s = Status::FromErrno(errno, "rename", path);
  if (!s.ok()) unlink(tmp.c_str());
  return s;
}

Result<std::string> Client::DownloadToBuffer(const std::string& file_id, uint64_t offset,
                                             uint64_t length) {
  DEPOT_ASSIGN_OR_RETURN(ParsedId p, Parse(file_id));
  DEPOT_ASSIGN_OR_RETURN(StorageNode node, impl_->QueryFile(p, proto::kTrackerQueryFetchOne));
  std::string body;
  proto::AppendU64(&body, offset);
  proto::AppendU64(&body, length);
  body += p.group_and_name;
  DEPOT_ASSIGN_OR_RETURN(net::Reply r, impl_->SmallCall(node.ip, node.port, proto::kStorageDownload,
                                                        body, 1ULL << 31));
  DEPOT_RETURN_IF_ERROR(proto::WireToStatus(r.status, "download " + file_id));
  return std::move(r.body);
}

Status Client::Delete(const std::string& file_id) {
  DEPOT_ASSIGN_OR_RETURN(ParsedId p, Parse(file_id));
  DEPOT_ASSIGN_OR_RETURN(StorageNode node, impl_->QueryFile(p, proto::kTrackerQueryUpdate));
  DEPOT_ASSIGN_OR_RETURN(net::Reply r, impl_->SmallCall(node.ip, node.port, proto::kStorageDelete,
                                                        p.group_and_name, 0));
  return proto::WireToStatus(r.status, "delete " + file_id);
}

Result<FileInfo> Client::Info(const std::string& file_id) {
  DEPOT_ASSIGN_OR_RETURN(ParsedId p, Parse(file_id));
  DEPOT_ASSIGN_OR_RETURN(StorageNode node, impl_->QueryFile(p, proto::kTrackerQueryFetchOne));
  DEPOT_ASSIGN_OR_RETURN(
      net::Reply r,
      impl_->SmallCall(node.ip, node.port, proto::kStorageQueryFileInfo, p.group_and_name, 64));
  DEPOT_RETURN_IF_ERROR(proto::WireToStatus(r.status, "info " + file_id));
  if (r.body.size() != 40) return Status::Corruption("file info reply is not 40 bytes");
  FileInfo info;
  info.size = proto::GetU64(r.body.data());
  info.create_time = static_cast<int64_t>(proto::GetU64(r.body.data() + 8));
  info.crc32 = static_cast<uint32_t>(proto::GetU64(r.body.data() + 16));
  info.source_ip = std::string(proto::TrimFixed(std::string_view(r.body).substr(24, 16)));
  return info;
}

Result<std::map<std::string, std::string>> Client::GetMeta(const std::string& file_id) {
  DEPOT_ASSIGN_OR_RETURN(ParsedId p, Parse(file_id));
  DEPOT_ASSIGN_OR_RETURN(StorageNode node, impl_->QueryFile(p, proto::kTrackerQueryFetchOne));
  DEPOT_ASSIGN_OR_RETURN(net::Reply r, impl_->SmallCall(node.ip, node.port, proto::kStorageGetMeta,
                                                        p.group_and_name, 4 << 20));
  DEPOT_RETURN_IF_ERROR(proto::WireToStatus(r.status, "get metadata of " + file_id));
  auto meta = proto::ParseMeta(r.body);
  if (!meta.ok()) return Status::Corruption("metadata reply:", meta.status().message());
  return std::move(*meta);
}

Status Client::SetMeta(const std::string& file_id, const std::map<std::string, std::string>& meta,
                       bool merge) {
  DEPOT_ASSIGN_OR_RETURN(ParsedId p, Parse(file_id));
  DEPOT_ASSIGN_OR_RETURN(StorageNode node, impl_->QueryFile(p, proto::kTrackerQueryUpdate));
  return impl_->SetMetaOn(node, p, meta, merge);
}

Result<std::vector<GroupStatus>> Client::ClusterStatus() {
  // Depot trackers answer the JSON status (with replication); FastDFS ones only 91/92.
  auto js = impl_->TrackerCall(proto::kDepotClusterStatus, {}, 16 << 20);
  if (js.ok() && js->status == 0) {
    using nlohmann::json;
    json doc = json::parse(js->body, nullptr, /*allow_exceptions=*/false);
    if (doc.is_object() && doc.contains("groups") && doc["groups"].is_array()) {
      std::vector<GroupStatus> out;
      auto i64 = [](const json& j, const char* k) -> int64_t {
        auto it = j.find(k);
        return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
      };
      auto str = [](const json& j, const char* k) -> std::string {
        auto it = j.find(k);
        return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
      };
      for (const auto& g : doc["groups"]) {
        if (!g.is_object()) continue;
        GroupStatus gs;
        gs.name = str(g, "name");
        gs.total_mb = i64(g, "total_mb");
        gs.free_mb = i64(g, "free_mb");
        gs.writable = i64(g, "writable");
        gs.readable = i64(g, "readable");
        if (g.contains("members") && g["members"].is_array()) {
          for (const auto& m : g["members"]) {
            if (!m.is_object()) continue;
            MemberStatus ms;
            ms.id = str(m, "id");
            ms.ip = str(m, "ip");
            ms.port = static_cast<int>(i64(m, "port"));
            ms.http_port = static_cast<int>(i64(m, "http_port"));
            ms.state = static_cast<int>(i64(m, "state"));
            ms.state_name = str(m, "state_name");
            ms.store_path_count = static_cast<int>(std::max<int64_t>(1, i64(m, "store_path_count")));
            ms.total_mb = i64(m, "total_mb");
            ms.free_mb = i64(m, "free_mb");
            ms.reserved_mb = i64(m, "reserved_mb");
            ms.uploads = i64(m, "uploads");
            ms.downloads = i64(m, "downloads");
            ms.last_heartbeat = i64(m, "last_heartbeat");
            ms.version = str(m, "version");
            ms.repl_state = str(m, "repl_state");
            ms.binlog_seq = i64(m, "binlog_seq");
            if (m.contains("sync") && m["sync"].is_array()) {
              for (const auto& r : m["sync"]) {
                if (!r.is_object()) continue;
                MemberStatus::PeerSync ps;
                ps.peer = str(r, "peer");
                ps.synced_until = i64(r, "synced_until");
                ps.lag_records = i64(r, "lag_records");
                ps.lag_seconds = i64(r, "lag_seconds");
                ps.connected = r.contains("connected") && r["connected"].is_boolean() &&
                               r["connected"].get<bool>();
                ms.sync.push_back(std::move(ps));
              }
            }
            gs.members.push_back(std::move(ms));
          }
        }
        out.push_back(std::move(gs));
      }
      return out;
    }
  }
  DEPOT_ASSIGN_OR_RETURN(net::Reply r, impl_->TrackerCall(proto::kTrackerListGroups, {}, 1 << 20));
  DEPOT_RETURN_IF_ERROR(proto::WireToStatus(r.status, "list groups"));
  DEPOT_ASSIGN_OR_RETURN(auto groups, proto::DecodeGroupStats(r.body));
  std::vector<GroupStatus> out;
  for (const auto& g : groups) {
    GroupStatus gs;
    gs.name = g.group_name;
    gs.total_mb = g.total_mb;
    gs.free_mb = g.free_mb;
    gs.writable = g.writable_count;
    gs.readable = g.readable_count;
    std::string body;
    proto::AppendFixed(&body, g.group_name, proto::kGroupNameLen);
    DEPOT_ASSIGN_OR_RETURN(net::Reply sr,
                           impl_->TrackerCall(proto::kTrackerListStorages, body, 1 << 20));
    DEPOT_RETURN_IF_ERROR(proto::WireToStatus(sr.status, "list storages"));
    DEPOT_ASSIGN_OR_RETURN(auto members, proto::DecodeStorageStats(sr.body));
    for (const auto& m : members) {
      MemberStatus ms;
      ms.id = m.id;
      ms.ip = m.ip;
      ms.port = static_cast<int>(m.storage_port);
      ms.state = m.status;
      ms.state_name = proto::StorageStateName(static_cast<proto::StorageState>(m.status));
      ms.total_mb = m.total_mb;
      ms.free_mb = m.free_mb;
      ms.reserved_mb = m.reserved_mb;
      ms.uploads = m.counters[proto::kCntUpload + 1];
      ms.downloads = m.counters[proto::kCntDownload + 1];
      ms.last_heartbeat = m.last_heartbeat_time;
      ms.version = m.version;
      gs.members.push_back(std::move(ms));
    }
    out.push_back(std::move(gs));
  }
  return out;
}

}  // namespace depot
