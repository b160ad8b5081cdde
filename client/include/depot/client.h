// libdepot: the C++ client of a Depot (or FastDFS V6) cluster.
//
// A Client knows the trackers, asks one of them where to store or read (failing over to the next
// when one is down), and talks to storage servers on pooled connections. Bodies are streamed:
// uploads from a file go out with sendfile, downloads are written to the destination in chunks,
// so memory use does not grow with file size. Thread-safe: one Client may be shared by threads.
//
// Every call returns a depot::Status / depot::Result: NotFound for a missing file (ENOENT),
// InvalidArgument for a malformed file ID, ResourceExhausted when the cluster is full,
// Unavailable when no tracker or storage answers.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/status.h"
#include "common/proto/dedup.h"

namespace depot {

struct ClientOptions {
  std::vector<std::string> trackers;  // "host:port"
  int connect_timeout_ms = 5000;
  int network_timeout_ms = 30000;
  // The cluster secret: only admin tools (fsck) need it, to list and repair members' files.
  std::string cluster_secret;
};

// Loads a client.conf (tracker_server, connect_timeout, network_timeout).
Result<ClientOptions> LoadClientOptions(const std::string& path);

struct UploadOptions {
  std::string group;  // empty: the tracker picks
  std::string ext;    // at most 6 characters, no dot
  std::map<std::string, std::string> meta;
};

struct FileInfo {
  uint64_t size = 0;
  int64_t create_time = 0;
  uint32_t crc32 = 0;
  std::string source_ip;
};

struct StorageNode {
  std::string group;
  std::string ip;
  int port = 0;
  int store_path = 0;
};

struct MemberStatus {
  std::string id;
  std::string ip;
  int port = 0;
  int state = 0;
  std::string state_name;
  int64_t total_mb = 0;
  int64_t free_mb = 0;
  int64_t reserved_mb = 0;
  int64_t uploads = 0;
  int64_t downloads = 0;
  int64_t last_heartbeat = 0;
  std::string version;
  int http_port = 0;
  int store_path_count = 1;
  // Replication (Depot trackers only): the member's own state and binlog position, and how far
  // each peer has applied this member's changes.
  std::string repl_state;
  int64_t binlog_seq = 0;
  struct PeerSync {
    std::string peer;
    int64_t synced_until = 0;
    int64_t lag_records = 0;
    int64_t lag_seconds = 0;
    bool connected = false;
  };
  std::vector<PeerSync> sync;
};

struct GroupStatus {
  std::string name;
  int64_t total_mb = 0;
  int64_t free_mb = 0;
  int64_t writable = 0;
  int64_t readable = 0;
  std::vector<MemberStatus> members;
};

// depot fsck: compares the members of a group file by file (names, sizes and, with verify, the
// content against the CRC32 in each name) and with repair copies a good version onto members
// that lack it or hold a bad one, and deletes files that were deleted on another member.
struct FsckOptions {
  std::string group;    // empty: every group
  bool repair = false;
  bool verify = false;  // read every file (slow) instead of comparing sizes
};
struct FsckProblem {
  std::string file_id;
  std::string member;  // "ip:port"
  std::string kind;    // missing | size | corrupt | deleted | unreachable
  bool repaired = false;
  std::string detail;
};
struct FsckReport {
  int64_t files = 0;    // distinct live files seen
  int64_t members = 0;  // members checked
  std::vector<FsckProblem> problems;
  bool clean() const;   // no problem left unrepaired
};

// Instant upload (doc/dedup.md): the storage already holds the content and grants a new file
// ID once the client proves it has the bytes. Not granted: upload the file normally.
struct InstantResult {
  bool granted = false;
  std::string file_id;  // when granted
};

// depot dedup-scan: what one member's DEDUP_SCAN (232) found, or with repair did.
struct DedupScanMember {
  std::string group;
  std::string member;  // "ip:port"
  bool reconcile = false;  // this member set the group's dht records
  proto::DedupScanReport report;
};

// Called as a transfer progresses: bytes done so far and the total.
using ProgressFn = std::function<void(uint64_t done, uint64_t total)>;

// The file ID a slave of `master_id` with `prefix` (and `ext`, empty: the master's) gets.
Result<std::string> SlaveFileId(const std::string& master_id, const std::string& prefix,
                                const std::string& ext = "");

class Client {
 public:
  static Result<std::unique_ptr<Client>> Create(ClientOptions options);
  ~Client();

  Result<std::string> UploadFile(const std::string& path, const UploadOptions& opts,
                                 const ProgressFn& progress = nullptr);
  Result<std::string> UploadBuffer(std::string_view data, const UploadOptions& opts);
  // Instant upload: hashes the file (XXH3-128; `progress` reports the hashing), asks a storage
  // of opts.group (or the tracker's pick) whether its group holds that content, and answers its
  // challenge with the requested ranges of the file. Granted: the new file's ID (with opts.meta
  // set). Not granted (the group does not have it, its dht is unreachable, or dedup is off):
  // granted == false, and nothing is stored. PermissionDenied when the storage refuses the proof
  // (the file changed while it was read); InvalidArgument for a bad opts.ext.
  Result<InstantResult> InstantUploadFile(const std::string& path, const UploadOptions& opts,
                                          const ProgressFn& progress = nullptr);
  // Uploads `size` bytes supplied by `read` (it fills up to n bytes of buf and returns how many),
  // for bodies that arrive from elsewhere, such as an HTTP request, in bounded memory. A read
  // error or an early end (0 before `size`) aborts the upload: nothing is stored.
  using ReadFn = std::function<Result<size_t>(char* buf, size_t n)>;
  Result<std::string> UploadStream(uint64_t size, const ReadFn& read, const UploadOptions& opts);

  // Appender files (FastDFS's): created like an upload, then changed in place. Changes go to
  // the file's source storage; each is applied whole or not at all, one at a time per file.
  // A file that is not an appender file refuses them (InvalidArgument, FastDFS's EINVAL).
  Result<std::string> UploadAppenderFile(const std::string& path, const UploadOptions& opts,
                                         const ProgressFn& progress = nullptr);
  Result<std::string> UploadAppenderBuffer(std::string_view data, const UploadOptions& opts);
  Status AppendFile(const std::string& file_id, const std::string& path,
                    const ProgressFn& progress = nullptr);
  Status AppendBuffer(const std::string& file_id, std::string_view data);
  // Writes at `offset` (at most the current size; the file may grow past its end).
  Status ModifyFile(const std::string& file_id, uint64_t offset, const std::string& path,
                    const ProgressFn& progress = nullptr);
  Status ModifyBuffer(const std::string& file_id, uint64_t offset, std::string_view data);
  // Cuts the file to `size` bytes (at most its current size).
  Status Truncate(const std::string& file_id, uint64_t size);
  // Turns a finished appender file into a normal file: returns its new file ID (the old one
  // is gone).
  Result<std::string> RegenerateAppender(const std::string& file_id);

  // Slave files: stored next to their master under the master's name plus `prefix` (and
  // opts.ext, or the master's extension). NotFound when the master does not exist,
  // AlreadyExists when the slave does.
  Result<std::string> UploadSlaveFile(const std::string& master_id, const std::string& prefix,
                                      const std::string& path, const UploadOptions& opts,
                                      const ProgressFn& progress = nullptr);
  Result<std::string> UploadSlaveBuffer(const std::string& master_id, const std::string& prefix,
                                        std::string_view data, const UploadOptions& opts);

  // Writes [offset, offset+length) (length 0: to the end) of the file to `fd`.
  Status DownloadToFd(const std::string& file_id, int fd, uint64_t offset = 0,
                      uint64_t length = 0, const ProgressFn& progress = nullptr);
  // Downloads into `path` through a temp file renamed into place when complete.
  Status DownloadToFile(const std::string& file_id, const std::string& path,
                        const ProgressFn& progress = nullptr);
  // Hands [offset, offset+length) of the file (length 0: to the end) to `sink` piece by piece.
  // A sink error stops the download and is returned.
  using SinkFn = std::function<Status(const char* data, size_t n)>;
  Status DownloadToSink(const std::string& file_id, uint64_t offset, uint64_t length,
                        const SinkFn& sink);
  Result<std::string> DownloadToBuffer(const std::string& file_id, uint64_t offset = 0,
                                       uint64_t length = 0);

  Status Delete(const std::string& file_id);
  Result<FileInfo> Info(const std::string& file_id);
  // NotFound when the file has no metadata (FastDFS behaviour) or does not exist.
  Result<std::map<std::string, std::string>> GetMeta(const std::string& file_id);
  Status SetMeta(const std::string& file_id, const std::map<std::string, std::string>& meta,
                 bool merge);

  Result<std::vector<GroupStatus>> ClusterStatus();
  // Needs ClientOptions::cluster_secret.
  Result<FsckReport> Fsck(const FsckOptions& options);
  // Runs DEDUP_SCAN (232) on every ACTIVE member of `group` (empty: of every group), one after
  // the other: first one member per group with reconcile (it sets the group's dht records),
  // then the others. With repair the members merge copies and fix the dht; without, they only
  // count. Takes as long as reading every file. Needs ClientOptions::cluster_secret
  // (InvalidArgument without); NotFound for an unknown group; Unavailable when a group has no
  // ACTIVE member; a member's failure is returned with the member named.
  Result<std::vector<DedupScanMember>> DedupScan(const std::string& group, bool repair);
  const ClientOptions& options() const;

  // Tracker queries, exposed for tools and benchmarks.
  Result<StorageNode> QueryStore(const std::string& group);
  Result<StorageNode> QueryFetch(const std::string& file_id);
  Result<StorageNode> QueryUpdate(const std::string& file_id);

 private:
  class Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  // DownloadToSink with the reply's body length passed along (for progress).
  using SizedSink = std::function<Status(const char* data, size_t n, uint64_t total)>;
  Status DownloadSized(const std::string& file_id, uint64_t offset, uint64_t length,
                       const SizedSink& sink);
  std::unique_ptr<Impl> impl_;
};

}  // namespace depot
