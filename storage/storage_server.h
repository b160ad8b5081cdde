// StorageServer: owns one storage daemon's store paths, metadata store, frame server, tracker
// reporter and metrics. Handlers (storage/handlers/) decode a request, hand the disk work to the
// right store path's executor and reply from the connection's loop.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <prometheus/gauge.h>

#include "common/metrics/metrics.h"
#include "common/net/frame_server.h"
#include "common/proto/file_id.h"
#include "common/proto/stat_records.h"
#include "storage/config.h"
#include "storage/meta_store.h"
#include "storage/store_path.h"

namespace depot::storage {

class TrackerReporter;
class Replicator;
class HttpServer;
class Dedup;

// One mutex per file name in use (created on demand, dropped with its last holder): for changes
// that may take long (an append copies up to max_file_size), so that they serialise only with
// changes of the same file, never with a hashed neighbour.
class FileLocks {
 public:
  class Guard {
   public:
    Guard(FileLocks* owner, std::string name);
    ~Guard();
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;

   private:
    FileLocks* owner_;
    std::string name_;
    std::mutex* mu_;
  };

 private:
  struct Entry {
    std::mutex mu;
    int refs = 0;
  };
  std::mutex mu_;
  std::unordered_map<std::string, std::unique_ptr<Entry>> map_;  // GUARDED_BY(mu_)
};

class StorageServer {
 public:
  explicit StorageServer(StorageConfig config);
  ~StorageServer();

  Status Start();
  void Stop();
  int port() const { return server_ ? server_->port() : 0; }
  int metrics_port() const { return metrics_ ? metrics_->port() : 0; }
  int http_port() const;

  const StorageConfig& config() const { return config_; }
  std::vector<std::unique_ptr<StorePath>>& paths() { return paths_; }
  MetaStore& meta() { return *meta_; }
  Replicator& replicator() { return *replicator_; }
  Dedup& dedup() { return *dedup_; }
  prometheus::Registry& metrics_registry() { return metrics_->registry(); }
  // Sends the next heartbeat to every tracker now (the replication state changed).
  void KickReporter();
  int64_t join_time() const { return join_time_; }
  int64_t up_time() const { return up_time_; }
  int64_t connection_count() const { return server_ ? server_->connection_count() : 0; }

  // The IPv4 written into new file IDs: advertise_address, else the address trackers saw.
  uint32_t source_ip() const { return source_ip_.load(); }
  void set_source_ip(uint32_t ip) { source_ip_ = ip; }

  // Reserved bytes on a store path.
  int64_t ReservedBytes(const StorePath& p) const;
  // Picks a store path for an upload of `size` bytes (0xFF: round robin over paths with room).
  // InvalidArgument for an index out of range, ResourceExhausted when the reserve would be hit.
  Result<StorePath*> PathForUpload(uint8_t requested, uint64_t size);
  // Resolves a file ID of this group to its store path; InvalidArgument otherwise.
  Result<StorePath*> PathForFile(const proto::FileId& id);

  // A file's content, open for reading: its own file or its slot in a trunk file.
  struct OpenedFile {
    int fd = -1;  // the caller closes it
    uint64_t offset = 0;  // where the content starts in fd
    uint64_t size = 0;
    int64_t mtime = 0;
    // Keeps a trunk slot from being reused while its bytes are sent: hold it until then.
    std::shared_ptr<void> pin;
  };
  // NotFound when this member does not have the file; IOError on other errors.
  static Result<OpenedFile> OpenFile(StorePath* p, const proto::FileId& id);
  // True when this member has the file.
  static bool HasFile(StorePath* p, const proto::FileId& id);
  // Removes a file's content: unlinks it, or frees its trunk slot. NotFound when it is not here.
  Status RemoveContent(StorePath* p, const proto::FileId& id);

  // Serialises the read-modify-write of one file's metadata (merge) against other metadata
  // changes and deletes of the same file, across the writer threads.
  std::mutex& MetaLock(const std::string& remote_name) {
    return meta_locks_[std::hash<std::string>()(remote_name) % meta_locks_.size()];
  }

  // Serialises the content changes of one appender file (append, modify, truncate, regenerate)
  // and the reads of its changed bytes for replication. Taken before MetaLock, never after.
  FileLocks::Guard ContentLock(const std::string& remote_name) {
    return FileLocks::Guard(&content_locks_, remote_name);
  }

  // FastDFS stat counters (reported in heartbeats, listed by cmd 92).
  void Count(int counter, bool ok, int64_t n = 1);
  void Snapshot(int64_t out[proto::kStorageCounterCount]) const;
  int64_t last_source_update() const { return last_source_update_.load(); }
  void TouchSourceUpdate();

 private:
  void RefreshSpace();

  StorageConfig config_;
  std::vector<std::unique_ptr<StorePath>> paths_;
  std::unique_ptr<MetaStore> meta_;
  std::unique_ptr<metrics::MetricsServer> metrics_;
  std::unique_ptr<metrics::RpcMetrics> rpc_metrics_;
  std::vector<prometheus::Gauge*> free_gauges_;
  std::vector<prometheus::Gauge*> total_gauges_;
  std::vector<std::array<prometheus::Gauge*, 4>> trunk_gauges_;  // files, bytes, live, live bytes
  std::unique_ptr<net::EventLoop> timer_loop_;
  std::unique_ptr<net::FrameServer> server_;
  std::unique_ptr<TrackerReporter> reporter_;
  std::unique_ptr<Replicator> replicator_;
  std::unique_ptr<Dedup> dedup_;
  std::unique_ptr<HttpServer> http_;
  std::atomic<uint32_t> source_ip_{0x7f000001};
  std::atomic<uint64_t> path_rr_{0};
  int64_t join_time_ = 0;
  int64_t up_time_ = 0;
  std::array<std::atomic<int64_t>, proto::kStorageCounterCount> counters_{};
  std::atomic<int64_t> last_source_update_{0};
  std::array<std::mutex, 64> meta_locks_;
  FileLocks content_locks_;
};

// Handler families (storage/handlers/*.cc).
void RegisterUpload(StorageServer* s, net::FrameServer* fs);
void RegisterDownload(StorageServer* s, net::FrameServer* fs);
void RegisterFileOps(StorageServer* s, net::FrameServer* fs);
void RegisterMetadata(StorageServer* s, net::FrameServer* fs);
void RegisterSync(StorageServer* s, net::FrameServer* fs);
void RegisterFsck(StorageServer* s, net::FrameServer* fs);
void RegisterAppender(StorageServer* s, net::FrameServer* fs);
void RegisterDedup(StorageServer* s, net::FrameServer* fs);

// Parses "group16 + remote name" request bodies and checks the group is ours.
Result<proto::FileId> ParseGroupAndName(StorageServer* s, std::string_view body);

}  // namespace depot::storage
