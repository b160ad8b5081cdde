// Small POSIX file helpers shared by the daemons. Blocking: call them from disk threads or at
// start-up, never from a network loop. Every function returns a Status naming the path.
#pragma once

#include <cstdint>
#include <string>

#include "common/base/status.h"

namespace depot {

// mkdir -p with mode 0755.
Status MakeDirs(const std::string& path);
// fsync() on a directory so that a rename or create inside it is durable.
Status FsyncDir(const std::string& path);
// Writes `data` to `path` through a temp file + rename (+ fsync of file and dir when `durable`).
Status WriteFileAtomic(const std::string& path, const std::string& data, bool durable);
// Reads a whole (small) file.
Result<std::string> ReadSmallFile(const std::string& path, size_t max_bytes = 1 << 20);
// Writes all of `data` to `fd`, retrying on EINTR and short writes.
Status WriteAll(int fd, const void* data, size_t len, const std::string& what);
// Reads exactly `n` bytes at `offset` (pread, retrying on EINTR and short reads). False on an
// error or when the file ends first.
bool PreadFull(int fd, void* buf, size_t n, uint64_t offset);
// Free and total bytes of the filesystem holding `path` (statvfs, for unprivileged users).
struct DiskSpace {
  uint64_t total_bytes = 0;
  uint64_t free_bytes = 0;
};
Result<DiskSpace> GetDiskSpace(const std::string& path);
// Directory name of a path ("a/b/c" -> "a/b").
std::string DirName(const std::string& path);

}  // namespace depot
