// Binlog: the storage server's ordered log of file changes (doc/binlog.md). Every change this
// server makes as a file's source (an "own" record) and every change it applies from a peer (an
// "applied" record) is appended here; replication pushes own records to the group's peers in
// order, and a new member catches up by receiving a peer's whole binlog.
//
// Identity: each record carries its origin (the epoch of the server that made the change) and the
// change's number at that origin (oseq, 1, 2, ...). A server takes a new epoch when its binlog is
// created and after every unclean stop, so that numbers lost in a crash are never reused.
//
// Files under `dir`: `epochs` (every epoch of this server, one per line), `clean` (written by a
// clean close with the current epoch's last oseq, removed at Open: its absence at start-up means
// an unclean stop) and segments `binlog.NNNNNN` (a 32-byte header, then records; a new segment
// every segment_bytes).
//
// Thread-safe. Appends are serialised; readers (BinlogReader) read the segment files directly and
// never see a partly written record.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/status.h"

namespace depot::storage {

// Record operations.
inline constexpr char kOpCreate = 'C';
inline constexpr char kOpDelete = 'D';
inline constexpr char kOpMeta = 'M';
// Appender files: the record carries the range (append, modify) or the new size (truncate).
inline constexpr char kOpAppend = 'A';
inline constexpr char kOpModify = 'W';
inline constexpr char kOpTruncate = 'T';
// True for the ops whose records carry `offset` and `length` (16 bytes after the name).
inline bool OpHasRange(char op) { return op == kOpAppend || op == kOpModify || op == kOpTruncate; }

struct BinlogRecord {
  uint64_t seq = 0;     // position in this server's binlog (1, 2, ...)
  uint64_t origin = 0;  // epoch of the server that made the change
  uint64_t oseq = 0;    // the change's number at its origin
  uint32_t time = 0;    // unix seconds, when appended here
  // Own records only: every own create whose file ID carries a creation time <= watermark is at
  // or before this record (read routing, doc/replication.md).
  uint32_t watermark = 0;
  char op = 0;
  uint8_t flags = 0;
  std::string name;  // remote file name "M00/XX/YY/<name>"
  // OpHasRange ops only: the bytes [offset, offset + length) changed (append, modify), or the
  // file was cut to `offset` bytes (truncate, length 0).
  uint64_t offset = 0;
  uint64_t length = 0;
};

// Where a reader stands: segment number and byte offset of the next record.
struct BinlogPos {
  uint32_t segment = 0;
  uint64_t offset = 0;
  bool operator==(const BinlogPos&) const = default;
};

// What Open() found.
struct BinlogRecovery {
  bool unclean = false;         // the previous run did not close the binlog
  uint64_t torn_bytes = 0;      // bytes cut from the tail of the last segment
  uint64_t corrupt_records = 0; // invalid records inside the last segment (skipped by readers)
  uint32_t last_time = 0;       // time of the last valid record (0: none)
};

class Binlog {
 public:
  struct Options {
    uint64_t segment_bytes = 64ULL << 20;
  };
  static constexpr size_t kSegmentHeader = 32;
  static constexpr size_t kRecordHeader = 8;
  static constexpr size_t kMaxName = 1024;

  static Result<std::unique_ptr<Binlog>> Open(const std::string& dir, Options options);
  static Result<std::unique_ptr<Binlog>> Open(const std::string& dir) { return Open(dir, Options()); }
  ~Binlog();  // a clean close: syncs and writes `clean`

  uint64_t epoch() const { return epochs_.back(); }
  const std::vector<uint64_t>& epochs() const { return epochs_; }
  bool IsOwn(uint64_t origin) const;
  // Creation time of this server's first epoch.
  uint32_t first_created() const { return first_created_; }
  const BinlogRecovery& recovery() const { return recovery_; }
  // Set when records were lost (a cut tail, corruption) and the files created since this time
  // have not been announced again yet; ClearReannounce() once they have (and are synced).
  std::optional<uint32_t> reannounce_since() const { return reannounce_since_; }
  Status ClearReannounce();
  const std::string& dir() const { return dir_; }
  std::string SegmentPath(uint32_t n) const;

  // Creation times of own uploads in progress (for watermarks): BeginCreate returns the time to
  // put in the new file ID; AppendOwn(kOpCreate, ..., ctime) or AbortCreate(ctime) ends it.
  uint32_t BeginCreate();
  void AbortCreate(uint32_t ctime);
  // The watermark if a record were appended now.
  uint32_t WatermarkNow();
  // WatermarkNow() if `passed_seq` is the last record (a reader that has passed everything),
  // checked atomically with the append lock; nullopt otherwise.
  std::optional<uint32_t> CaughtUpWatermark(uint64_t passed_seq);

  Result<BinlogRecord> AppendOwn(char op, std::string_view name, uint32_t ctime = 0,
                                 uint8_t flags = 0);
  // An own change of an appender file's content (kOpAppend, kOpModify, kOpTruncate).
  Result<BinlogRecord> AppendOwnRange(char op, std::string_view name, uint64_t offset,
                                      uint64_t length);
  Result<BinlogRecord> AppendApplied(uint64_t origin, uint64_t oseq, char op,
                                     std::string_view name, uint8_t flags = 0,
                                     uint64_t offset = 0, uint64_t length = 0);
  // fdatasync of the current segment.
  Status Sync();

  uint64_t last_seq() const;
  BinlogPos end() const;
  // Blocks until a record beyond `seq` exists, Wake() is called or `timeout_ms` passes.
  void WaitBeyond(uint64_t seq, int timeout_ms);
  void Wake();

  // Record codec (exposed for tests and the fuzz target).
  static std::string Encode(const BinlogRecord& r);
  // Decodes one record at the start of `data`: the record and its encoded size. NotFound when
  // `data` holds only part of a record; Corruption when the bytes are not a valid record.
  static Result<std::pair<BinlogRecord, size_t>> Decode(std::string_view data);

 private:
  Binlog(std::string dir, Options options) : dir_(std::move(dir)), options_(options) {}
  Status Init();
  Status OpenSegment(uint32_t n, bool create, uint64_t first_seq);
  Status ScanLastSegment();
  Result<BinlogRecord> AppendLocked(BinlogRecord r);
  uint32_t WatermarkLocked(uint32_t now) const;

  std::string dir_;
  Options options_;
  std::vector<uint64_t> epochs_;
  uint32_t first_created_ = 0;
  BinlogRecovery recovery_;
  std::optional<uint32_t> reannounce_since_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  int fd_ = -1;                       // GUARDED_BY(mu_): current segment
  uint32_t segment_ = 0;              // GUARDED_BY(mu_)
  uint64_t offset_ = 0;               // GUARDED_BY(mu_): end of the last complete record
  uint64_t seq_ = 0;                  // GUARDED_BY(mu_)
  uint64_t oseq_ = 0;                 // GUARDED_BY(mu_): in the current epoch
  std::multiset<uint32_t> creating_;  // GUARDED_BY(mu_)
  uint64_t wakeups_ = 0;              // GUARDED_BY(mu_)
};

// Reads a binlog from a position, following it as it grows and across segments. Invalid records
// (corruption) are skipped by scanning for the next valid one and counted. One thread at a time.
class BinlogReader {
 public:
  explicit BinlogReader(const Binlog* log, BinlogPos start = {});
  ~BinlogReader();
  BinlogReader(const BinlogReader&) = delete;
  BinlogReader& operator=(const BinlogReader&) = delete;

  // The next record, or nullopt at the binlog's current end.
  Result<std::optional<BinlogRecord>> Next();
  BinlogPos pos() const { return pos_; }
  uint64_t skipped_bytes() const { return skipped_; }

 private:
  Status Fill(uint64_t from, size_t want, uint64_t limit);
  Status OpenSegment(uint32_t n);

  const Binlog* log_;
  BinlogPos pos_;
  int fd_ = -1;
  uint32_t fd_segment_ = 0;
  std::string buf_;
  uint64_t buf_off_ = 0;
  uint64_t skipped_ = 0;
};

}  // namespace depot::storage
