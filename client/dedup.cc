// Client::InstantUploadFile (242 INSTANT_UPLOAD + 243 INSTANT_PROVE) and Client::DedupScan
// (232 DEDUP_SCAN, internal). The formats are in common/proto/dedup.h and doc/dedup.md.
#include "common/proto/dedup.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/xattr.h>
#include <xxhash.h>
// The runtime-dispatched XXH3 (AVX2 where the CPU has it).
#include <xxh_x86dispatch.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <memory>

#include "common/base/fs.h"
#include "common/base/hash.h"
#include "common/net/blocking_conn.h"
#include "common/proto/file_id.h"
#include "common/proto/protocol.h"
#include "depot/client.h"

namespace depot {

namespace {

constexpr size_t kHashChunk = 1 << 20;
constexpr size_t kMapChunk = 64 << 20;
// The proof covers at most this many bytes: a storage asks for a few small ranges (or the whole
// of a small file), so a challenge past this is a broken or hostile server, not a reason to
// read gigabytes into memory.
constexpr uint64_t kMaxProofBytes = 64ULL << 20;
// A scan reads every file of the member.
constexpr int kScanTimeoutMs = 10 * 60 * 1000;

// A file opened for reading, closed on scope exit.
class ReadFile {
 public:
  ~ReadFile() {
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
    mtime_ns_ = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
    return Status::OK();
  }
  uint64_t size() const { return size_; }

  // The fingerprint cache: an extended attribute `user.depot.xxh3` = "<size> <mtime ns> <32 hex
  // digits>", written after hashing and used while size and mtime are unchanged. A stale entry
  // (a file rewritten within the same nanosecond at the same size) costs nothing but a refused
  // proof: the proof is computed from the bytes, and the client then uploads them.
  std::optional<std::string> CachedFingerprint() const {
    char buf[128];
    ssize_t n = fgetxattr(fd_, kXattr, buf, sizeof buf - 1);
    if (n <= 0) return std::nullopt;
    buf[n] = '\0';
    unsigned long long size = 0, mtime = 0;
    char hex[33] = {0};
    if (std::sscanf(buf, "%llu %llu %32s", &size, &mtime, hex) != 3 || size != size_ ||
        mtime != static_cast<unsigned long long>(mtime_ns_) || std::strlen(hex) != 32) {
      return std::nullopt;
    }
    std::string fp;
    for (int i = 0; i < 16; ++i) {
      unsigned x = 0;
      if (std::sscanf(hex + 2 * i, "%2x", &x) != 1) return std::nullopt;
      fp.push_back(static_cast<char>(x));
    }
    return fp;
  }
  void CacheFingerprint(const std::string& fp) const {
    std::string v = std::to_string(size_) + " " + std::to_string(mtime_ns_) + " " + HexEncode(fp);
    (void)fsetxattr(fd_, kXattr, v.data(), v.size(), 0);  // best effort (read-only files, tmpfs)
  }

  // Reads exactly n bytes at `offset` into buf; a read error or a file that got shorter is an
  // IOError.
  Status ReadAt(uint64_t offset, char* buf, size_t n) {
    if (!PreadFull(fd_, buf, n, offset)) return Status::IOError("short read (changed?):", path_);
    return Status::OK();
  }

  // The content's fingerprint: XXH3-128 of every byte, canonical (big-endian) form.
  Result<std::string> Fingerprint(const ProgressFn& progress) {
    std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> st(XXH3_createState(),
                                                                &XXH3_freeState);
    if (!st || XXH3_128bits_reset(st.get()) != XXH_OK) return Status::Internal("XXH3 state");
    uint64_t done = 0;
    // Mapped, the bytes are hashed straight from the page cache (no copy): three times as fast
    // as reading them into a buffer. Progress every kMapChunk.
    if (size_ > 0) {
      void* m = mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
      if (m != MAP_FAILED) {
        (void)madvise(m, size_, MADV_SEQUENTIAL | MADV_WILLNEED);
        const char* p = static_cast<const char*>(m);
        while (done < size_) {
          size_t n = static_cast<size_t>(std::min<uint64_t>(kMapChunk, size_ - done));
          XXH3_128bits_update(st.get(), p + done, n);
          done += n;
          if (progress) progress(done, size_);
        }
        munmap(m, size_);
      }
    }
    std::string buf(done < size_ ? kHashChunk : 0, '\0');
    while (done < size_) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(kHashChunk, size_ - done));
      DEPOT_RETURN_IF_ERROR(ReadAt(done, buf.data(), n));
      XXH3_128bits_update(st.get(), buf.data(), n);
      done += n;
      if (progress) progress(done, size_);
    }
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits_digest(st.get()));
    return std::string(reinterpret_cast<const char*>(c.digest), sizeof c.digest);
  }

 private:
  static constexpr const char* kXattr = "user.depot.xxh3";
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
  int64_t mtime_ns_ = 0;
};

}  // namespace

Result<InstantResult> Client::InstantUploadFile(const std::string& path, const UploadOptions& opts,
                                                const ProgressFn& progress) {
  DEPOT_RETURN_IF_ERROR(proto::ValidateExt(opts.ext));
  ReadFile f;
  DEPOT_RETURN_IF_ERROR(f.Open(path));
  std::string fp;
  if (auto cached = f.CachedFingerprint()) {
    fp = std::move(*cached);
    if (progress) progress(f.size(), f.size());
  } else {
    DEPOT_ASSIGN_OR_RETURN(fp, f.Fingerprint(progress));
    f.CacheFingerprint(fp);
  }
  DEPOT_ASSIGN_OR_RETURN(StorageNode node, QueryStore(opts.group));
  const ClientOptions& o = options();
  std::string where = node.ip + ":" + std::to_string(node.port);
  // Its own connection rather than a pooled one: two small calls, and a challenge whose answer
  // is refused leaves nothing behind to reuse.
  DEPOT_ASSIGN_OR_RETURN(auto conn,
                         net::BlockingConn::Connect(node.ip, node.port, o.connect_timeout_ms));
  conn->set_timeout_ms(o.network_timeout_ms);

  proto::InstantUploadRequest req;
  req.store_path = static_cast<uint8_t>(node.store_path);
  req.size = f.size();
  req.ext = opts.ext;
  req.fp = fp;
  DEPOT_ASSIGN_OR_RETURN(
      net::Reply r, conn->Call(proto::kDepotInstantUpload, proto::EncodeInstantUpload(req), 1024));
  if (r.status == ENOENT || r.status == EAGAIN || r.status == EOPNOTSUPP || r.status == EBUSY ||
      r.status == EACCES) {
    // Not here, dht unreachable, dedup off, too many challenges open, or too many failed proofs
    // of this content: upload normally.
    return InstantResult{};
  }
  DEPOT_RETURN_IF_ERROR(proto::WireToStatus(r.status, "instant upload to " + where));
  auto challenge = proto::DecodeInstantChallenge(r.body, f.size());
  if (!challenge.ok()) {
    return Status::Corruption("instant upload to " + where + ":", challenge.status().message());
  }
  uint64_t total = 0;
  for (const proto::ByteRange& br : challenge->ranges) total += br.length;  // each <= 2^62
  if (total > kMaxProofBytes) {
    return Status::Corruption("instant upload to " + where + ":",
                              "the challenge asks for " + std::to_string(total) + " bytes");
  }
  std::string bytes(static_cast<size_t>(total), '\0');
  size_t at = 0;
  for (const proto::ByteRange& br : challenge->ranges) {
    DEPOT_RETURN_IF_ERROR(f.ReadAt(br.offset, bytes.data() + at, static_cast<size_t>(br.length)));
    at += static_cast<size_t>(br.length);
  }
  std::string prove = challenge->nonce + HmacSha256(challenge->nonce, bytes);
  DEPOT_ASSIGN_OR_RETURN(net::Reply pr,
                         conn->Call(proto::kDepotInstantProve, prove,
                                    proto::kGroupNameLen + proto::kMaxRemoteNameLen));
  if (pr.status == EACCES || pr.status == ENOENT) {
    // Refused (the file changed since its cached fingerprint was taken) or the content went
    // away meanwhile: upload normally.
    return InstantResult{};
  }
  DEPOT_RETURN_IF_ERROR(proto::WireToStatus(pr.status, "instant upload proof to " + where));
  if (pr.body.size() <= proto::kGroupNameLen) {
    return Status::Corruption("short instant upload reply from", where);
  }
  InstantResult out;
  out.granted = true;
  out.file_id = std::string(proto::TrimFixed(std::string_view(pr.body).substr(0, 16))) + "/" +
                pr.body.substr(proto::kGroupNameLen);
  if (!opts.meta.empty()) {
    // As an upload does: a file whose metadata could not be set is removed, not left behind.
    Status m = SetMeta(out.file_id, opts.meta, /*merge=*/false);
    if (!m.ok()) {
      (void)Delete(out.file_id);
      return m.WithContext("instant upload " + out.file_id +
                           " stored but its metadata failed; removed");
    }
  }
  return out;
}

Result<std::vector<DedupScanMember>> Client::DedupScan(const std::string& group, bool repair) {
  const ClientOptions& o = options();
  if (o.cluster_secret.empty()) {
    return Status::InvalidArgument(
        "dedup-scan needs the cluster secret (--secret, "
        "DEPOT_CLUSTER_SECRET or cluster_secret in client.conf)");
  }
  DEPOT_ASSIGN_OR_RETURN(auto groups, ClusterStatus());
  std::vector<DedupScanMember> out;
  bool found_group = group.empty();
  for (const auto& g : groups) {
    if (!group.empty() && g.name != group) continue;
    found_group = true;
    bool first = true;
    for (const auto& m : g.members) {
      if (m.state != static_cast<int>(proto::StorageState::kActive)) continue;
      DedupScanMember sm;
      sm.group = g.name;
      sm.member = m.ip + ":" + std::to_string(m.port);
      sm.reconcile = first;  // one member per group sets the dht records, and it goes first
      first = false;
      auto scan = [&]() -> Status {
        DEPOT_ASSIGN_OR_RETURN(auto c,
                               net::BlockingConn::Connect(m.ip, m.port, o.connect_timeout_ms));
        c->set_timeout_ms(std::max(o.network_timeout_ms, kScanTimeoutMs));
        DEPOT_RETURN_IF_ERROR(c->Authenticate(o.cluster_secret));
        proto::DedupScanRequest req{repair, sm.reconcile};
        DEPOT_ASSIGN_OR_RETURN(net::Reply r, c->Call(proto::kDepotDedupScan,
                                                     proto::EncodeDedupScanRequest(req), 1 << 20));
        DEPOT_RETURN_IF_ERROR(proto::WireToStatus(r.status, "dedup scan"));
        auto rep = proto::DecodeDedupScanReport(r.body);
        if (!rep.ok()) return Status::Corruption("dedup scan report:", rep.status().message());
        sm.report = *rep;
        return Status::OK();
      };
      Status s = scan();
      if (!s.ok()) return s.WithContext("member " + sm.member + " of " + g.name);
      out.push_back(std::move(sm));
    }
    if (first) return Status::Unavailable("no ACTIVE member to scan in group", g.name);
  }
  if (!found_group) return Status::NotFound("no such group:", group);
  return out;
}

}  // namespace depot
