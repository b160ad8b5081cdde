// File helpers for appender and slave files: copying a byte range between descriptors and
// reading a file's size and CRC32.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <string>

#include "common/base/status.h"

namespace depot::storage {

// Closes a descriptor when it goes out of scope.
struct FdCloser {
  explicit FdCloser(int f) : fd(f) {}
  ~FdCloser() {
    if (fd >= 0) close(fd);
  }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;
  int fd;
};

// Copies `len` bytes from `src` at `src_off` to `dst` at `dst_off` (copy_file_range, or
// pread/pwrite where the kernel cannot). IOError when `src` ends early.
Status CopyRange(int src, uint64_t src_off, int dst, uint64_t dst_off, uint64_t len);

// The size and CRC32 of the whole file at `path`.
Status FileSizeAndCrc(const std::string& path, uint64_t* size, uint32_t* crc);

}  // namespace depot::storage
