#include "storage/binlog.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "common/base/fs.h"
#include "common/base/hash.h"
#include "common/base/logging.h"

namespace depot::storage {
namespace {

constexpr char kSegmentMagic[8] = {'D', 'P', 'B', 'I', 'N', 'L', 'G', '1'};
constexpr uint8_t kRecordMagic = 0xDB;
constexpr uint8_t kRecordVersion = 1;
constexpr size_t kFixedPayload = 8 + 8 + 8 + 4 + 4 + 1 + 1 + 2;  // before the name

void PutU16(std::string* o, uint16_t v) {
  o->push_back(static_cast<char>(v >> 8));
  o->push_back(static_cast<char>(v));
}
void PutU32(std::string* o, uint32_t v) {
  for (int i = 3; i >= 0; --i) o->push_back(static_cast<char>(v >> (i * 8)));
}
void PutU64(std::string* o, uint64_t v) {
  for (int i = 7; i >= 0; --i) o->push_back(static_cast<char>(v >> (i * 8)));
}
uint64_t GetBE(const char* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

bool ValidOp(char op) {
  return op == kOpCreate || op == kOpDelete || op == kOpMeta || OpHasRange(op);
}
size_t ArgBytes(char op) { return OpHasRange(op) ? 16 : 0; }

Result<std::vector<uint32_t>> ListSegments(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return Status::FromErrno(errno, "opendir", dir);
  std::vector<uint32_t> out;
  while (dirent* e = readdir(d)) {
    unsigned n = 0;
    char tail = 0;
    if (std::strlen(e->d_name) == 13 && std::sscanf(e->d_name, "binlog.%6u%c", &n, &tail) == 1) {
      out.push_back(n);
    }
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

std::string Binlog::Encode(const BinlogRecord& r) {
  std::string payload;
  payload.reserve(kFixedPayload + r.name.size());
  PutU64(&payload, r.seq);
  PutU64(&payload, r.origin);
  PutU64(&payload, r.oseq);
  PutU32(&payload, r.time);
  PutU32(&payload, r.watermark);
  payload.push_back(r.op);
  payload.push_back(static_cast<char>(r.flags));
  PutU16(&payload, static_cast<uint16_t>(r.name.size()));
  payload += r.name;
  if (OpHasRange(r.op)) {
    PutU64(&payload, r.offset);
    PutU64(&payload, r.length);
  }
  std::string out;
  out.reserve(kRecordHeader + payload.size());
  out.push_back(static_cast<char>(kRecordMagic));
  out.push_back(static_cast<char>(kRecordVersion));
  PutU16(&out, static_cast<uint16_t>(payload.size()));
  PutU32(&out, Crc32(payload));
  out += payload;
  return out;
}

Result<std::pair<BinlogRecord, size_t>> Binlog::Decode(std::string_view data) {
  if (!data.empty() && static_cast<uint8_t>(data[0]) != kRecordMagic) {
    return Status::Corruption("binlog: bad record magic");
  }
  if (data.size() < kRecordHeader) return Status::NotFound("binlog: partial record");
  if (static_cast<uint8_t>(data[1]) != kRecordVersion) {
    return Status::Corruption("binlog: unknown record version");
  }
  size_t len = GetBE(data.data() + 2, 2);
  if (len < kFixedPayload || len > kFixedPayload + kMaxName + 16) {
    return Status::Corruption("binlog: bad record length");
  }
  if (data.size() < kRecordHeader + len) return Status::NotFound("binlog: partial record");
  std::string_view payload = data.substr(kRecordHeader, len);
  if (Crc32(payload) != static_cast<uint32_t>(GetBE(data.data() + 4, 4))) {
    return Status::Corruption("binlog: record checksum mismatch");
  }
  const char* p = payload.data();
  BinlogRecord r;
  r.seq = GetBE(p, 8);
  r.origin = GetBE(p + 8, 8);
  r.oseq = GetBE(p + 16, 8);
  r.time = static_cast<uint32_t>(GetBE(p + 24, 4));
  r.watermark = static_cast<uint32_t>(GetBE(p + 28, 4));
  r.op = p[32];
  r.flags = static_cast<uint8_t>(p[33]);
  size_t name_len = GetBE(p + 34, 2);
  if (!ValidOp(r.op) || name_len + ArgBytes(r.op) != len - kFixedPayload || name_len == 0 ||
      name_len > kMaxName || r.seq == 0 || r.oseq == 0) {
    return Status::Corruption("binlog: bad record fields");
  }
  r.name.assign(payload.substr(kFixedPayload, name_len));
  if (OpHasRange(r.op)) {
    r.offset = GetBE(p + kFixedPayload + name_len, 8);
    r.length = GetBE(p + kFixedPayload + name_len + 8, 8);
  }
  return std::make_pair(std::move(r), kRecordHeader + len);
}

Result<std::unique_ptr<Binlog>> Binlog::Open(const std::string& dir, Options options) {
  std::unique_ptr<Binlog> log(new Binlog(dir, options));
  DEPOT_RETURN_IF_ERROR(log->Init());
  return log;
}

std::string Binlog::SegmentPath(uint32_t n) const {
  char name[32];
  std::snprintf(name, sizeof name, "/binlog.%06u", n);
  return dir_ + name;
}

Status Binlog::Init() {
  DEPOT_RETURN_IF_ERROR(MakeDirs(dir_));
  DEPOT_ASSIGN_OR_RETURN(auto segments, ListSegments(dir_));
  std::string clean_path = dir_ + "/clean";
  std::optional<uint64_t> clean_oseq;
  if (access(clean_path.c_str(), F_OK) == 0) {
    DEPOT_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(clean_path, 256));
    unsigned long long v = 0;
    if (std::sscanf(text.c_str(), "oseq=%llu", &v) == 1) clean_oseq = v;
  }
  recovery_.unclean = !segments.empty() && !clean_oseq;

  // Epochs: a new one for a new binlog and after an unclean stop.
  std::string epochs_path = dir_ + "/epochs";
  std::string epochs_text;
  if (access(epochs_path.c_str(), F_OK) == 0) {
    DEPOT_ASSIGN_OR_RETURN(epochs_text, ReadSmallFile(epochs_path, 1 << 20));
  }
  size_t pos = 0;
  while (pos < epochs_text.size()) {
    size_t nl = epochs_text.find('\n', pos);
    if (nl == std::string::npos) break;  // a torn last line: ignored
    unsigned long long e = 0, created = 0;
    if (std::sscanf(epochs_text.c_str() + pos, "%16llx %llu", &e, &created) == 2 && e != 0) {
      epochs_.push_back(e);
      if (first_created_ == 0) first_created_ = static_cast<uint32_t>(created);
    }
    pos = nl + 1;
  }
  epochs_text.resize(pos);
  // A segment cut short while it was being created (a crash between its creation and its header
  // reaching the disk) holds no record: it goes.
  while (!segments.empty()) {
    struct stat st;
    std::string path = SegmentPath(segments.back());
    if (stat(path.c_str(), &st) != 0 || static_cast<size_t>(st.st_size) >= kSegmentHeader) break;
    DEPOT_LOG_WARN("binlog {}: removing segment {} torn at creation", dir_, path);
    if (unlink(path.c_str()) != 0) return Status::FromErrno(errno, "unlink", path);
    segments.pop_back();
    recovery_.unclean = true;
  }
  if (!segments.empty()) {
    segment_ = segments.back();
    DEPOT_RETURN_IF_ERROR(OpenSegment(segment_, /*create=*/false, 0));
    DEPOT_RETURN_IF_ERROR(ScanLastSegment());
  }
  if (access((dir_ + "/reannounce").c_str(), F_OK) == 0) {
    DEPOT_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(dir_ + "/reannounce", 256));
    unsigned v = 0;
    reannounce_since_ = std::sscanf(text.c_str(), "since=%u", &v) == 1 ? v : 0;
  }
  // A new epoch for a new binlog, after an unclean stop and after any damage: numbers that were
  // handed out before may be lost, and a number is never given to two changes.
  if (recovery_.torn_bytes > 0 || recovery_.corrupt_records > 0) recovery_.unclean = true;
  bool new_epoch = epochs_.empty() || recovery_.unclean || !clean_oseq;
  if (new_epoch) {
    uint64_t e = 0;
    while (e == 0) e = RandomU64();
    uint32_t now = static_cast<uint32_t>(UnixSeconds());
    char line[64];
    std::snprintf(line, sizeof line, "%016llx %u\n", static_cast<unsigned long long>(e), now);
    epochs_text += line;
    DEPOT_RETURN_IF_ERROR(WriteFileAtomic(epochs_path, epochs_text, /*durable=*/true));
    epochs_.push_back(e);
    if (first_created_ == 0) first_created_ = now;
  }
  oseq_ = new_epoch ? 0 : *clean_oseq;
  if (clean_oseq) {
    // From now on the binlog is open: a crash must be seen as one at the next start.
    if (unlink(clean_path.c_str()) != 0) return Status::FromErrno(errno, "unlink", clean_path);
    DEPOT_RETURN_IF_ERROR(FsyncDir(dir_));
  }

  if (segments.empty()) return OpenSegment(0, /*create=*/true, 1);
  if (recovery_.unclean) {
    DEPOT_LOG_WARN("binlog {}: the last run did not stop cleanly; new epoch {:016x}", dir_, epoch());
  }
  return Status::OK();
}

Status Binlog::ScanLastSegment() {
  // Scan the last segment: find its end and last sequence number, cut a torn tail.
  struct stat st;
  if (fstat(fd_, &st) != 0) return Status::FromErrno(errno, "fstat", SegmentPath(segment_));
  uint64_t size = static_cast<uint64_t>(st.st_size);
  std::string head(kSegmentHeader, '\0');
  if (size < kSegmentHeader ||
      pread(fd_, head.data(), kSegmentHeader, 0) != static_cast<ssize_t>(kSegmentHeader) ||
      std::memcmp(head.data(), kSegmentMagic, 8) != 0) {
    return Status::Corruption("binlog segment has no valid header:", SegmentPath(segment_));
  }
  seq_ = GetBE(head.data() + 8, 8) - 1;
  std::string data(size - kSegmentHeader, '\0');
  size_t got = 0;
  while (got < data.size()) {
    ssize_t n = pread(fd_, data.data() + got, data.size() - got,
                      static_cast<off_t>(kSegmentHeader + got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::FromErrno(n < 0 ? errno : EIO, "read", SegmentPath(segment_));
    got += static_cast<size_t>(n);
  }
  size_t off = 0, good_end = 0;
  std::string_view all(data);
  while (off < all.size()) {
    auto d = Decode(all.substr(off));
    if (d.ok()) {
      seq_ = std::max(seq_, d->first.seq);
      recovery_.last_time = d->first.time;
      off += d->second;
      good_end = off;
      continue;
    }
    // A partial record, or corrupt bytes (a damaged length may look like a partial record):
    // resume at the next valid record; with none after it, it is a torn tail.
    size_t k = off + 1;
    for (; k < all.size(); ++k) {
      if (static_cast<uint8_t>(all[k]) == kRecordMagic && Decode(all.substr(k)).ok()) break;
    }
    if (k >= all.size()) break;
    recovery_.corrupt_records++;
    off = k;
  }
  offset_ = kSegmentHeader + good_end;
  recovery_.torn_bytes = size - offset_;
  if (recovery_.torn_bytes > 0 || recovery_.corrupt_records > 0) {
    // Records are lost: the files created lately are to be announced again. The marker is
    // written before anything is cut and removed only once that is done (a crash in between
    // repeats it at the next start).
    char text[48];
    std::snprintf(text, sizeof text, "since=%u\n", recovery_.last_time);
    DEPOT_RETURN_IF_ERROR(WriteFileAtomic(dir_ + "/reannounce", text, /*durable=*/true));
  }
  if (recovery_.torn_bytes > 0) {
    DEPOT_LOG_WARN("binlog {}: torn tail of {} bytes after the last valid record; cut", dir_,
                   recovery_.torn_bytes);
    if (ftruncate(fd_, static_cast<off_t>(offset_)) != 0 || fdatasync(fd_) != 0) {
      return Status::FromErrno(errno, "truncate", SegmentPath(segment_));
    }
  }
  if (recovery_.corrupt_records > 0) {
    DEPOT_LOG_WARN("binlog {}: {} corrupt records in the last segment will be skipped", dir_,
                   recovery_.corrupt_records);
  }
  return Status::OK();
}

Status Binlog::OpenSegment(uint32_t n, bool create, uint64_t first_seq) {
  std::string path = SegmentPath(n);
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0), 0644);
  if (fd < 0) return Status::FromErrno(errno, "open", path);
  if (create) {
    std::string head(kSegmentMagic, 8);
    PutU64(&head, first_seq);
    PutU64(&head, epoch());
    head.append(kSegmentHeader - head.size(), '\0');
    Status s = WriteAll(fd, head.data(), head.size(), path);
    if (s.ok() && fdatasync(fd) != 0) s = Status::FromErrno(errno, "fdatasync", path);
    if (s.ok()) s = FsyncDir(dir_);
    if (!s.ok()) {
      close(fd);
      return s;
    }
    offset_ = kSegmentHeader;
  }
  if (fd_ >= 0) close(fd_);
  fd_ = fd;
  segment_ = n;
  return Status::OK();
}

Binlog::~Binlog() {
  std::lock_guard<std::mutex> l(mu_);
  if (fd_ < 0) return;
  bool ok = fdatasync(fd_) == 0;
  close(fd_);
  fd_ = -1;
  if (ok) {
    char text[48];
    std::snprintf(text, sizeof text, "oseq=%llu\n", static_cast<unsigned long long>(oseq_));
    Status s = WriteFileAtomic(dir_ + "/clean", text, /*durable=*/true);
    if (!s.ok()) DEPOT_LOG_WARN("binlog {}: {}", dir_, s.ToString());
  }
}

Status Binlog::ClearReannounce() {
  std::string path = dir_ + "/reannounce";
  if (unlink(path.c_str()) != 0 && errno != ENOENT) return Status::FromErrno(errno, "unlink", path);
  reannounce_since_.reset();
  return FsyncDir(dir_);
}

bool Binlog::IsOwn(uint64_t origin) const {
  return std::find(epochs_.begin(), epochs_.end(), origin) != epochs_.end();
}

uint32_t Binlog::WatermarkLocked(uint32_t now) const {
  uint32_t low = creating_.empty() ? now : std::min(now, *creating_.begin());
  return low - 1;
}

uint32_t Binlog::BeginCreate() {
  std::lock_guard<std::mutex> l(mu_);
  uint32_t now = static_cast<uint32_t>(UnixSeconds());
  creating_.insert(now);
  return now;
}

void Binlog::AbortCreate(uint32_t ctime) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = creating_.find(ctime);
  if (it != creating_.end()) creating_.erase(it);
}

uint32_t Binlog::WatermarkNow() {
  std::lock_guard<std::mutex> l(mu_);
  return WatermarkLocked(static_cast<uint32_t>(UnixSeconds()));
}

std::optional<uint32_t> Binlog::CaughtUpWatermark(uint64_t passed_seq) {
  std::lock_guard<std::mutex> l(mu_);
  if (seq_ != passed_seq) return std::nullopt;
  return WatermarkLocked(static_cast<uint32_t>(UnixSeconds()));
}

Result<BinlogRecord> Binlog::AppendOwn(char op, std::string_view name, uint32_t ctime,
                                       uint8_t flags) {
  std::lock_guard<std::mutex> l(mu_);
  if (ctime != 0) {
    auto it = creating_.find(ctime);
    if (it != creating_.end()) creating_.erase(it);
  }
  BinlogRecord r;
  r.origin = epoch();
  r.oseq = oseq_ + 1;
  r.op = op;
  r.flags = flags;
  r.name.assign(name);
  auto out = AppendLocked(std::move(r));
  if (out.ok()) oseq_ = out->oseq;
  return out;
}

Result<BinlogRecord> Binlog::AppendOwnRange(char op, std::string_view name, uint64_t offset,
                                            uint64_t length) {
  if (!OpHasRange(op)) return Status::InvalidArgument("binlog: not a range op");
  std::lock_guard<std::mutex> l(mu_);
  BinlogRecord r;
  r.origin = epoch();
  r.oseq = oseq_ + 1;
  r.op = op;
  r.name.assign(name);
  r.offset = offset;
  r.length = length;
  auto out = AppendLocked(std::move(r));
  if (out.ok()) oseq_ = out->oseq;
  return out;
}

Result<BinlogRecord> Binlog::AppendApplied(uint64_t origin, uint64_t oseq, char op,
                                           std::string_view name, uint8_t flags, uint64_t offset,
                                           uint64_t length) {
  std::lock_guard<std::mutex> l(mu_);
  BinlogRecord r;
  r.origin = origin;
  r.oseq = oseq;
  r.op = op;
  r.flags = flags;
  r.name.assign(name);
  r.offset = offset;
  r.length = length;
  return AppendLocked(std::move(r));
}

Result<BinlogRecord> Binlog::AppendLocked(BinlogRecord r) {
  if (fd_ < 0) return Status::Unavailable("binlog is closed");
  if (r.name.empty() || r.name.size() > kMaxName || !ValidOp(r.op)) {
    return Status::InvalidArgument("binlog: bad record");
  }
  uint32_t now = static_cast<uint32_t>(UnixSeconds());
  r.seq = seq_ + 1;
  r.time = now;
  r.watermark = WatermarkLocked(now);
  std::string bytes = Encode(r);
  if (offset_ + bytes.size() > options_.segment_bytes && offset_ > kSegmentHeader) {
    if (fdatasync(fd_) != 0) return Status::FromErrno(errno, "fdatasync", SegmentPath(segment_));
    DEPOT_RETURN_IF_ERROR(OpenSegment(segment_ + 1, /*create=*/true, r.seq));
  }
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = pwrite(fd_, bytes.data() + done, bytes.size() - done,
                       static_cast<off_t>(offset_ + done));
    if (n < 0 && errno == EINTR) continue;
    // Nothing is published on failure: the next append overwrites the partial bytes.
    if (n <= 0) return Status::FromErrno(n < 0 ? errno : EIO, "binlog write", SegmentPath(segment_));
    done += static_cast<size_t>(n);
  }
  offset_ += bytes.size();
  seq_ = r.seq;
  cv_.notify_all();
  return r;
}

Status Binlog::Sync() {
  int fd;
  {
    std::lock_guard<std::mutex> l(mu_);
    fd = dup(fd_);
  }
  if (fd < 0) return Status::FromErrno(errno, "dup", dir_);
  int rc = fdatasync(fd);
  int err = errno;
  close(fd);
  if (rc != 0) return Status::FromErrno(err, "fdatasync", dir_);
  return Status::OK();
}

uint64_t Binlog::last_seq() const {
  std::lock_guard<std::mutex> l(mu_);
  return seq_;
}

BinlogPos Binlog::end() const {
  std::lock_guard<std::mutex> l(mu_);
  return BinlogPos{segment_, offset_};
}

void Binlog::WaitBeyond(uint64_t seq, int timeout_ms) {
  std::unique_lock<std::mutex> l(mu_);
  uint64_t w = wakeups_;
  cv_.wait_for(l, std::chrono::milliseconds(timeout_ms),
               [&] { return seq_ > seq || wakeups_ != w; });
}

void Binlog::Wake() {
  {
    std::lock_guard<std::mutex> l(mu_);
    ++wakeups_;
  }
  cv_.notify_all();
}

BinlogReader::BinlogReader(const Binlog* log, BinlogPos start) : log_(log), pos_(start) {
  if (pos_.offset < Binlog::kSegmentHeader) pos_.offset = Binlog::kSegmentHeader;
}

BinlogReader::~BinlogReader() {
  if (fd_ >= 0) close(fd_);
}

Status BinlogReader::OpenSegment(uint32_t n) {
  if (fd_ >= 0 && fd_segment_ == n) return Status::OK();
  if (fd_ >= 0) close(fd_);
  std::string path = log_->SegmentPath(n);
  fd_ = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) return Status::FromErrno(errno, "open", path);
  fd_segment_ = n;
  buf_.clear();
  buf_off_ = 0;
  return Status::OK();
}

Status BinlogReader::Fill(uint64_t from, size_t want, uint64_t limit) {
  uint64_t to = std::min<uint64_t>(from + want, limit);
  if (from >= buf_off_ && to <= buf_off_ + buf_.size()) return Status::OK();
  size_t len = static_cast<size_t>(std::min<uint64_t>(std::max<size_t>(want, 256 * 1024), limit - from));
  buf_.resize(len);
  size_t got = 0;
  while (got < len) {
    ssize_t n = pread(fd_, buf_.data() + got, len - got, static_cast<off_t>(from + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno(errno, "read", log_->SegmentPath(fd_segment_));
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  buf_.resize(got);
  buf_off_ = from;
  return Status::OK();
}

Result<std::optional<BinlogRecord>> BinlogReader::Next() {
  constexpr size_t kMaxRecord = Binlog::kRecordHeader + kFixedPayload + Binlog::kMaxName + 16;
  for (;;) {
    BinlogPos end = log_->end();
    DEPOT_RETURN_IF_ERROR(OpenSegment(pos_.segment));
    uint64_t limit = end.offset;
    if (pos_.segment < end.segment) {
      struct stat st;
      if (fstat(fd_, &st) != 0) return Status::FromErrno(errno, "fstat", log_->SegmentPath(pos_.segment));
      limit = static_cast<uint64_t>(st.st_size);
    } else if (pos_.segment > end.segment) {
      return std::optional<BinlogRecord>();
    }
    if (pos_.offset >= limit) {
      if (pos_.segment < end.segment) {
        pos_ = BinlogPos{pos_.segment + 1, Binlog::kSegmentHeader};
        continue;
      }
      return std::optional<BinlogRecord>();
    }
    DEPOT_RETURN_IF_ERROR(Fill(pos_.offset, kMaxRecord, limit));
    auto view = [&](uint64_t at) {
      uint64_t stop = std::min<uint64_t>(buf_off_ + buf_.size(), limit);
      return std::string_view(buf_).substr(at - buf_off_, stop - at);
    };
    auto d = Binlog::Decode(view(pos_.offset));
    if (d.ok()) {
      pos_.offset += d->second;
      return std::optional<BinlogRecord>(std::move(d->first));
    }
    // Corruption: appends publish only whole records, so a record that seems to run past the
    // published end has a damaged length. Find the next valid record.
    uint64_t k = pos_.offset + 1;
    for (; k < limit; ++k) {
      DEPOT_RETURN_IF_ERROR(Fill(k, kMaxRecord, limit));
      std::string_view v = view(k);
      if (!v.empty() && static_cast<uint8_t>(v[0]) == kRecordMagic && Binlog::Decode(v).ok()) break;
    }
    skipped_ += k - pos_.offset;
    DEPOT_LOG_WARN("binlog {}: skipped {} invalid bytes at segment {} offset {}", log_->dir(),
                   k - pos_.offset, pos_.segment, pos_.offset);
    pos_.offset = k;
  }
}

}  // namespace depot::storage
