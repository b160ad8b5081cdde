#include "storage/store_path.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstdio>
#include <set>
#include <vector>

#include "common/base/fs.h"
#include "common/base/hash.h"
#include "common/base/logging.h"
#include "common/proto/file_id.h"
#include "storage/trunk.h"

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

void StorePath::set_trunk(std::unique_ptr<TrunkStore> t) { trunk_ = std::move(t); }

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
  DEPOT_RETURN_IF_ERROR(RecoverRecentDirs());
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
  return CreatePendingIn(static_cast<int>((n >> 8) & 0xFF), static_cast<int>(n & 0xFF));
}

Result<StorePath::PendingFile> StorePath::CreatePendingIn(int dir1, int dir2) {
  PendingFile f;
  f.dir1 = dir1 & 0xFF;
  f.dir2 = dir2 & 0xFF;
  DEPOT_RETURN_IF_ERROR(EnsureDir(f.dir1, f.dir2));
  char dir[24];
  std::snprintf(dir, sizeof dir, "/data/%02X/%02X", f.dir1, f.dir2);
  if (have_tmpfile_) {
    f.fd = open((root_ + dir).c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0644);
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
  f.fd = open(f.tmp_path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (f.fd < 0) return Status::FromErrno(errno, "create", f.tmp_path);
  return f;
}

std::string StorePath::DataPath(int dir1, int dir2, const std::string& name) {
  char rel[24];
  std::snprintf(rel, sizeof rel, "data/%02X/%02X/", dir1 & 0xFF, dir2 & 0xFF);
  return rel + name;
}

Status StorePath::Publish(PendingFile* f, const std::string& name) {
  char rel[24];
  std::snprintf(rel, sizeof rel, "/data/%02X/%02X/", f->dir1, f->dir2);
  std::string dst = root_ + rel + name;
  // The file's mtime is the creation time in its name, on every member: Last-Modified and the
  // ETag ("<mtime hex>-<size hex>", nginx's form) are then the same whoever serves it, storaged
  // or nginx straight from disk.
  auto fields = proto::DecodeNameFields(name);
  if (fields.ok()) {
    timespec times[2] = {{0, UTIME_OMIT}, {static_cast<time_t>(fields->create_time), 0}};
    futimens(f->fd, times);
  }
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
                       std::function<void(Status, PendingFile)> done,
                       std::function<Status()> named) {
  {
    std::lock_guard<std::mutex> l(commit_mu_);
    commits_.push_back({std::move(f), std::move(name), std::move(done), std::move(named)});
  }
  commit_cv_.notify_one();
}

// Group commit with one syncfs per round. A round takes every upload that finished meanwhile,
// names the files (linkat), calls syncfs once and then acknowledges them: an acknowledged upload
// has its data and its name on disk.
//
// A crash between the naming and the sync may leave a name whose data did not reach the disk (a
// short or zero-filled file) - but never an acknowledged one. Such files are found at start-up:
// before the first file is named into a directory, that directory is recorded in `recent-dirs`
// (written durably, after a syncfs that made every earlier name durable), and Init() checks every
// file of the recorded directories against the size and CRC32 its name carries, removing the
// ones that do not match. Directories rotate every kFilesPerDir files, so the record changes (one
// extra sync) once per hundred uploads, and recovery reads a few hundred files at most.
void StorePath::CommitLoop() {
  std::string data_dir = root_ + "/data";
  int dir_fd = -1;
  std::set<int> recent;  // directories listed in recent-dirs
  for (;;) {
    std::vector<PendingCommit> batch;
    {
      std::unique_lock<std::mutex> l(commit_mu_);
      commit_cv_.wait(l, [this] { return commit_stop_ || !commits_.empty(); });
      if (commits_.empty()) break;
      batch.swap(commits_);
    }
    // Opened here, not before the loop: the thread starts before Init() creates data/.
    if (dir_fd < 0) dir_fd = open(data_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    auto sync = [&]() -> Status {
      if (dir_fd < 0 || syncfs(dir_fd) != 0) {
        return Status::FromErrno(dir_fd < 0 ? EBADF : errno, "syncfs", data_dir);
      }
      return Status::OK();
    };
    Status s;
    std::set<int> dirs;
    for (const auto& c : batch) dirs.insert(c.file.dir1 * 256 + c.file.dir2);
    if (!std::includes(recent.begin(), recent.end(), dirs.begin(), dirs.end())) {
      // Every name given so far becomes durable, so the old directories need no check any more.
      s = sync();
      if (s.ok()) s = WriteRecentDirs(dirs);
      if (s.ok()) recent = dirs;
    }
    std::vector<Status> results(batch.size(), s);
    bool any = false;
    for (size_t i = 0; i < batch.size() && s.ok(); ++i) {
      results[i] = Publish(&batch[i].file, batch[i].name);
      if (results[i].ok() && batch[i].named) {
        results[i] = batch[i].named();
        if (!results[i].ok()) unlink(FullPath(DataPath(batch[i].file.dir1, batch[i].file.dir2, batch[i].name)).c_str());
      }
      any = any || results[i].ok();
    }
    if (any) {
      Status synced = sync();
      if (synced.ok() && after_sync_) synced = after_sync_();
      for (auto& r : results) {
        if (r.ok()) r = synced;
      }
    }
    for (size_t i = 0; i < batch.size(); ++i) batch[i].done(results[i], std::move(batch[i].file));
  }
  // Clean stop: everything named is made durable, so no check is needed at the next start.
  if (dir_fd >= 0) {
    if (syncfs(dir_fd) == 0) unlink((root_ + "/recent-dirs").c_str());
    close(dir_fd);
  }
}

Status StorePath::WriteRecentDirs(const std::set<int>& dirs) {
  std::string text;
  char buf[8];
  for (int d : dirs) {
    std::snprintf(buf, sizeof buf, "%02X/%02X\n", d / 256, d % 256);
    text += buf;
  }
  return WriteFileAtomic(root_ + "/recent-dirs", text, /*durable=*/true);
}

Status StorePath::RecoverRecentDirs() {
  std::string list_path = root_ + "/recent-dirs";
  if (access(list_path.c_str(), F_OK) != 0) return Status::OK();
  DEPOT_ASSIGN_OR_RETURN(std::string list, ReadSmallFile(list_path, 1 << 16));
  int checked = 0, removed = 0;
  size_t pos = 0;
  while (pos < list.size()) {
    size_t nl = list.find('\n', pos);
    if (nl == std::string::npos) nl = list.size();
    std::string rel = list.substr(pos, nl - pos);  // "XX/YY"
    pos = nl + 1;
    if (rel.size() != 5 || rel[2] != '/') continue;  // a torn list: ignore the line
    std::string dir = root_ + "/data/" + rel;
    unsigned d1 = 0, d2 = 0;
    if (std::sscanf(rel.c_str(), "%2x/%2x", &d1, &d2) != 2) continue;
    for (const auto& name : ListDir(static_cast<int>(d1), static_cast<int>(d2))) {
      auto id = proto::ParseRemoteName("recover", "M00/" + rel + "/" + name);
      if (!id.ok() || !id->NamePinsContent() || id->InTrunk()) continue;
      std::string path = dir + "/" + name;
      ++checked;
      if (!FileMatches(path, proto::SizeFromWord(id->fields.size_word), id->fields.crc32)) {
        DEPOT_LOG_WARN("store path {}: removing {} (named but never acknowledged before a crash: "
                       "its content does not match its name)", root_, path);
        unlink(path.c_str());
        ++removed;
      }
    }
  }
  DEPOT_LOG_INFO("store path {}: crash recovery checked {} recent files, removed {}", root_, checked,
                 removed);
  return Status::OK();
}

bool StorePath::FileMatches(const std::string& path, uint64_t size, uint32_t crc) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st;
  if (fstat(fd, &st) != 0 || static_cast<uint64_t>(st.st_size) != size) {
    close(fd);
    return false;
  }
  uint32_t c = 0;
  std::vector<char> buf(1 << 20);
  for (;;) {
    ssize_t n = read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    c = Crc32Update(c, buf.data(), static_cast<size_t>(n));
  }
  close(fd);
  return c == crc;
}

std::vector<std::string> StorePath::ListDir(int dir1, int dir2) const {
  std::vector<std::string> names;
  DIR* d = opendir(FullPath(DataPath(dir1, dir2, "")).c_str());
  if (d == nullptr) return names;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') names.push_back(e->d_name);
  }
  closedir(d);
  return names;
}

Status StorePath::ForEachFile(const std::function<void(const std::string&)>& fn) const {
  char prefix[16];
  std::snprintf(prefix, sizeof prefix, "M%02X/", index_);
  for (int d1 = 0; d1 < 256; ++d1) {
    char top[32];
    std::snprintf(top, sizeof top, "/data/%02X", d1);
    if (access((root_ + top).c_str(), F_OK) != 0) continue;
    for (int d2 = 0; d2 < 256; ++d2) {
      for (const auto& name : ListDir(d1, d2)) fn(prefix + DataPath(d1, d2, name).substr(5));
    }
  }
  return Status::OK();
}

Status StorePath::SyncAll() {
  std::string data_dir = root_ + "/data";
  int fd = open(data_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "open", data_dir);
  int rc = syncfs(fd);
  int err = errno;
  close(fd);
  if (rc != 0) return Status::FromErrno(err, "syncfs", data_dir);
  return Status::OK();
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
