#include "storage/appender_io.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <vector>

#include "common/base/hash.h"

namespace depot::storage {

Status CopyRange(int src, uint64_t src_off, int dst, uint64_t dst_off, uint64_t len) {
  loff_t in = static_cast<loff_t>(src_off);
  loff_t out = static_cast<loff_t>(dst_off);
  bool fallback = false;
  while (len > 0 && !fallback) {
    size_t want = len > (1u << 30) ? (1u << 30) : static_cast<size_t>(len);
    ssize_t n = copy_file_range(src, &in, dst, &out, want, 0);
    if (n > 0) {
      len -= static_cast<uint64_t>(n);
    } else if (n == 0) {
      return Status::IOError("copy: source ended early");
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP) {
      fallback = true;
    } else {
      return Status::FromErrno(errno, "copy_file_range");
    }
  }
  std::vector<char> buf(len > 0 ? (1 << 20) : 0);
  while (len > 0) {
    size_t want = len > buf.size() ? buf.size() : static_cast<size_t>(len);
    ssize_t n = pread(src, buf.data(), want, in);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno(errno, "pread");
    if (n == 0) return Status::IOError("copy: source ended early");
    size_t done = 0;
    while (done < static_cast<size_t>(n)) {
      ssize_t w = pwrite(dst, buf.data() + done, static_cast<size_t>(n) - done, out);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return Status::FromErrno(errno, "pwrite");
      done += static_cast<size_t>(w);
      out += w;
    }
    in += n;
    len -= static_cast<uint64_t>(n);
  }
  return Status::OK();
}

Status FileSizeAndCrc(const std::string& path, uint64_t* size, uint32_t* crc) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return errno == ENOENT ? Status::NotFound("no such file:", path)
                           : Status::FromErrno(errno, "open", path);
  }
  FdCloser closer(fd);
  posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  std::vector<char> buf(1 << 20);
  uint32_t c = 0;
  uint64_t total = 0;
  for (;;) {
    ssize_t n = read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno(errno, "read", path);
    if (n == 0) break;
    c = Crc32Update(c, buf.data(), static_cast<size_t>(n));
    total += static_cast<uint64_t>(n);
  }
  *size = total;
  *crc = c;
  return Status::OK();
}

}  // namespace depot::storage
