#include "storage/store_path.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <set>

#include "common/base/fs.h"
#include "common/base/hash.h"
#include "common/base/logging.h"

namespace depot::storage {

StorePath::StorePath(int index, std::string root, bool durable, int writer_threads,
                     int reader_threads)
    : index_(index), root_(std::move(root)), durable_(durable), file_seq_(RandomU64() & 0xFFFFFF) {
  char name[16];
  std::snprintf(name, sizeof name, "dw%02X", index);
  writer_ = std::make_unique<DiskExecutor>(name, writer_threads);
  std::snprintf(name, sizeof name, "dr%02X", index);
  reader_ = std::make_unique<DiskExecutor>(name, reader_threads);
  if (durable_) commit_thread_ = std::thread([this] { CommitLoop(); });
}

StorePath::~StorePath() {
  writer_.reset();
  reader_.reset();
  if (commit_thread_.joinable()) {
    {
      std::lock_guard<std::mutex> l(commit_mu_);
      commit_stop_ = true;
    }
    commit_cv_.notify_all();
    commit_thread_.join();
  }
}

Status StorePath::Init() {
  DEPOT_RETURN_IF_ERROR(MakeDirs(root_ + "/data"));
  DEPOT_RETURN_IF_ERROR(MakeDirs(root_ + "/tmp"));
  // Uploads cut short by a crash never became visible; their temp files go now.
  std::string tmp = root_ + "/tmp";
  DIR* d = opendir(tmp.c_str());
  if (d == nullptr) return Status::FromErrno(errno, "opendir", tmp);
  int removed = 0;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    if (unlink((tmp + "/" + n).c_str()) == 0) ++removed;
  }
  closedir(d);
  if (removed > 0) DEPOT_LOG_INFO("store path {}: removed {} unfinished uploads", root_, removed);
  RefreshSpace();
  return Status::OK();
}

Status StorePath::EnsureDir(int dir1, int dir2) {
  size_t bit = static_cast<size_t>(dir1 * 256 + dir2);
  {
    std::lock_guard<std::mutex> l(dirs_mu_);
    if (dirs_made_.test(bit)) return Status::OK();
  }
  char top[16], sub[16];
  std::snprintf(top, sizeof top, "/data/%02X", dir1);
  std::snprintf(sub, sizeof sub, "/%02X", dir2);
  std::string top_path = root_ + top;
  std::string path = top_path + sub;
  for (const std::string& p : {top_path, path}) {
    if (mkdir(p.c_str(), 0755) != 0 && errno != EEXIST) return Status::FromErrno(errno, "mkdir", p);
  }
  if (durable_) {
    DEPOT_RETURN_IF_ERROR(FsyncDir(root_ + "/data"));
    DEPOT_RETURN_IF_ERROR(FsyncDir(top_path));
  }
  std::lock_guard<std::mutex> l(dirs_mu_);
  dirs_made_.set(bit);
  return Status::OK();
}

Result<StorePath::PendingFile> StorePath::CreatePending() {
  uint64_t n = file_seq_++ / kFilesPerDir;
  PendingFile f;
  f.dir1 = static_cast<int>((n >> 8) & 0xFF);
  f.dir2 = static_cast<int>(n & 0xFF);
  DEPOT_RETURN_IF_ERROR(EnsureDir(f.dir1, f.dir2));
  char dir[24];
  std::snprintf(dir, sizeof dir, "/data/%02X/%02X", f.dir1, f.dir2);
  if (have_tmpfile_) {
    f.fd = open((root_ + dir).c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
    if (f.fd >= 0) return f;
    if (errno != EOPNOTSUPP && errno != EISDIR) {
      return Status::FromErrno(errno, "create (O_TMPFILE) in", root_ + dir);
    }
    DEPOT_LOG_WARN("store path {}: no O_TMPFILE support; using tmp/ and rename", root_);
    have_tmpfile_ = false;
  }
  char name[64];
  std::snprintf(name, sizeof name, "/tmp/%016llx%08llx.part",
                static_cast<unsigned long long>(RandomU64()),
                static_cast<unsigned long long>(tmp_seq_++ & 0xFFFFFFFF));
  f.tmp_path = root_ + name;
  f.fd = open(f.tmp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (f.fd < 0) return Status::FromErrno(errno, "create", f.tmp_path);
  return f;
}

Status StorePath::Publish(PendingFile* f, const std::string& name) {
  char rel[24];
  std::snprintf(rel, sizeof rel, "/data/%02X/%02X/", f->dir1, f->dir2);
  std::string dst = root_ + rel + name;
  int rc;
  if (f->tmp_path.empty()) {
    // Name the unnamed inode; linkat never replaces an existing name.
    std::string proc = "/proc/self/fd/" + std::to_string(f->fd);
    rc = linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, dst.c_str(), AT_SYMLINK_FOLLOW);
  } else {
    rc = renameat2(AT_FDCWD, f->tmp_path.c_str(), AT_FDCWD, dst.c_str(), RENAME_NOREPLACE);
  }
  if (rc != 0) return Status::FromErrno(errno, "publish", dst);
  f->tmp_path.clear();
  close(f->fd);
  f->fd = -1;
  return Status::OK();
}

void StorePath::Discard(PendingFile* f) {
  if (f->fd >= 0) close(f->fd);
  f->fd = -1;
  if (!f->tmp_path.empty()) unlink(f->tmp_path.c_str());
  f->tmp_path.clear();
}

void StorePath::Commit(PendingFile f, std::string name,
                       std::function<void(Status, PendingFile)> done) {
  {
    std::lock_guard<std::mutex> l(commit_mu_);
    commits_.push_back({std::move(f), std::move(name), std::move(done)});
  }
  commit_cv_.notify_one();
}

void StorePath::CommitLoop() {
  // Group commit, pipelined. Each round takes every upload that finished meanwhile and makes one
  // syncfs, which makes durable both the data of this round's files and the names given in the
  // previous round. Then the previous round is acknowledged (data and name are on disk) and this
  // round's files get their names (their data is on disk). A file is thus named only after its
  // data is durable, and acknowledged only after its name is: a crash leaves either a whole
  // named file or an unnamed inode (freed by the filesystem) / a temp file (removed at start-up).
  // One sync per round instead of two doubles what a round of syncs can carry.
  std::string data_dir = root_ + "/data";
  int dir_fd = -1;
  std::vector<PendingCommit> named;  // named last round, waiting for a sync
  std::vector<Status> named_status;
  for (;;) {
    std::vector<PendingCommit> batch;
    {
      std::unique_lock<std::mutex> l(commit_mu_);
      if (named.empty()) {
        commit_cv_.wait(l, [this] { return commit_stop_ || !commits_.empty(); });
        if (commits_.empty()) break;
      }
      batch.swap(commits_);
    }
    Status sync_status;
    // Opened here, not before the loop: the thread starts before Init() creates data/.
    if (dir_fd < 0) dir_fd = open(data_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0 || syncfs(dir_fd) != 0) {
      sync_status = Status::FromErrno(dir_fd < 0 ? EBADF : errno, "syncfs", data_dir);
    }
    for (size_t i = 0; i < named.size(); ++i) {
      Status s = named_status[i].ok() ? sync_status : named_status[i];
      named[i].done(s, std::move(named[i].file));
    }
    named.clear();
    named_status.clear();
    for (auto& c : batch) {
      Status s = sync_status.ok() ? Publish(&c.file, c.name) : sync_status;
      if (s.ok() || sync_status.ok()) {
        named_status.push_back(s);
        named.push_back(std::move(c));
      } else {
        c.done(s, std::move(c.file));
      }
    }
  }
  if (dir_fd >= 0) close(dir_fd);
}

void StorePath::RefreshSpace() {
  auto space = GetDiskSpace(root_);
  if (!space.ok()) {
    DEPOT_LOG_WARN("store path {}: {}", root_, space.status().ToString());
    return;
  }
  total_bytes_ = static_cast<int64_t>(space->total_bytes);
  free_bytes_ = static_cast<int64_t>(space->free_bytes);
}

}  // namespace depot::storage
