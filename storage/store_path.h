// StorePath: one store path of a storage server: `<root>/data/<XX>/<YY>/<name>` for files and
// `<root>/tmp/` for uploads in progress (doc/storage-layout.md). Owns the path's disk threads and
// its group-commit thread for durable writes.
//
// Threading: FinishUpload, Remove and the other file functions run on the path's disk threads.
// Free-space bookkeeping is atomic and may be read from any thread.
#pragma once

#include <atomic>
#include <bitset>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/base/status.h"
#include "storage/disk_executor.h"

namespace depot::storage {

class TrunkStore;

class StorePath {
 public:
  StorePath(int index, std::string root, bool durable, int writer_threads, int reader_threads);
  ~StorePath();

  // Creates data/ and tmp/, removes leftover temp files, reads free space.
  Status Init();

  int index() const { return index_; }
  const std::string& root() const { return root_; }
  bool durable() const { return durable_; }
  DiskExecutor& writer() { return *writer_; }
  DiskExecutor& reader() { return *reader_; }
  // The path's trunk files (doc/trunk.md); set once at start-up.
  TrunkStore* trunk() { return trunk_.get(); }
  void set_trunk(std::unique_ptr<TrunkStore> t);

  std::string FullPath(const std::string& relative) const { return root_ + "/" + relative; }
  // "data/XX/YY/<name>".
  static std::string DataPath(int dir1, int dir2, const std::string& name);

  // A file being written: an unnamed O_TMPFILE inode in its final directory (or, where the
  // filesystem lacks O_TMPFILE, a file under tmp/). Invisible until Publish/Commit names it.
  // Move-only: exactly one owner holds the descriptor, so that a file handed to the commit
  // thread cannot also be closed by its upload.
  struct PendingFile {
    int fd = -1;
    std::string tmp_path;  // empty for an O_TMPFILE inode
    int dir1 = 0, dir2 = 0;
    PendingFile() = default;
    PendingFile(PendingFile&& o) noexcept
        : fd(std::exchange(o.fd, -1)), tmp_path(std::move(o.tmp_path)), dir1(o.dir1), dir2(o.dir2) {
      o.tmp_path.clear();
    }
    PendingFile& operator=(PendingFile&& o) noexcept {
      if (this != &o) {
        Discard(this);
        fd = std::exchange(o.fd, -1);
        tmp_path = std::move(o.tmp_path);
        o.tmp_path.clear();
        dir1 = o.dir1;
        dir2 = o.dir2;
      }
      return *this;
    }
    PendingFile(const PendingFile&) = delete;
    PendingFile& operator=(const PendingFile&) = delete;
    ~PendingFile() { Discard(this); }
  };
  // Creates the pending file in the current write directory (FastDFS-style: the directory
  // moves on every kFilesPerDir files, so directories are created rarely).
  Result<PendingFile> CreatePending();
  // A pending file in a given directory (replicated and repaired files keep their directory).
  Result<PendingFile> CreatePendingIn(int dir1, int dir2);
  // Gives a complete pending file its name `data/XX/YY/<name>` (XX/YY from the pending file)
  // without replacing an existing file (AlreadyExists then), and closes it.
  Status Publish(PendingFile* f, const std::string& name);
  // Durable publish: the file's data, its name and the directory entry reach the disk before
  // `done` runs (on the commit thread). Concurrent commits share one sync (group commit).
  // `named` (optional) runs on the commit thread once the name exists and before the sync, so
  // that what it writes (the binlog record) is made durable by the same sync.
  void Commit(PendingFile f, std::string name, std::function<void(Status, PendingFile)> done,
              std::function<Status()> named = nullptr);
  // Runs after each group-commit sync: makes durable what the store path's sync does not cover
  // (the binlog, when it lives on another filesystem).
  void set_after_sync(std::function<Status()> fn) { after_sync_ = std::move(fn); }
  // The names in data/XX/YY (none when the directory does not exist).
  std::vector<std::string> ListDir(int dir1, int dir2) const;
  // Calls fn("M<NN>/XX/YY/<name>") for every file under data/.
  Status ForEachFile(const std::function<void(const std::string& remote_name)>& fn) const;
  // syncfs of the store path's filesystem.
  Status SyncAll();
  // True when the file at `path` has exactly `size` bytes with CRC32 `crc`.
  static bool FileMatches(const std::string& path, uint64_t size, uint32_t crc);
  // Closes and removes a pending file that will not be published.
  static void Discard(PendingFile* f);

  // Space accounting for the reserved-space check.
  void RefreshSpace();
  int64_t free_bytes() const { return free_bytes_.load(); }
  int64_t total_bytes() const { return total_bytes_.load(); }
  // Takes `bytes` out of the cached free space (an upload in flight).
  void Consume(int64_t bytes) { free_bytes_ -= bytes; }

 private:
  static constexpr uint64_t kFilesPerDir = 100;
  struct PendingCommit {
    PendingFile file;
    std::string name;
    std::function<void(Status, PendingFile)> done;
    std::function<Status()> named;
  };
  Status EnsureDir(int dir1, int dir2);
  void CommitLoop();
  // recent-dirs: the write directories whose names may be durable before their data.
  Status WriteRecentDirs(const std::set<int>& dirs);
  // At start-up, after a crash: removes files of those directories that do not match the size
  // and CRC32 in their names.
  Status RecoverRecentDirs();

  int index_;
  std::string root_;
  bool durable_;
  std::unique_ptr<DiskExecutor> writer_;
  std::unique_ptr<DiskExecutor> reader_;
  std::atomic<int64_t> free_bytes_{0};
  std::atomic<int64_t> total_bytes_{0};
  std::atomic<uint64_t> tmp_seq_{0};
  std::atomic<uint64_t> file_seq_{0};
  bool have_tmpfile_ = true;
  std::mutex dirs_mu_;
  std::bitset<65536> dirs_made_;  // GUARDED_BY(dirs_mu_)
  std::bitset<256> top_dirs_made_;  // GUARDED_BY(dirs_mu_)

  std::mutex commit_mu_;
  std::condition_variable commit_cv_;
  std::vector<PendingCommit> commits_;  // GUARDED_BY(commit_mu_)
  bool commit_stop_ = false;            // GUARDED_BY(commit_mu_)
  std::thread commit_thread_;
  std::function<Status()> after_sync_;
  std::unique_ptr<TrunkStore> trunk_;
};

}  // namespace depot::storage
