// Download (14): offset8 + length8 (0 = to the end) + group16 + remote name; reply the bytes.
// Small ranges are read on a reader thread and sent from memory; large ones go out with
// sendfile from the descriptor the reader thread opened (after asking the kernel to read ahead).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/logging.h"
#include "storage/storage_server.h"

namespace depot::storage {
namespace {

using net::ConnectionPtr;
using proto::FrameHeader;

// Ranges up to this size are read into memory on the reader thread and go out with the header
// in one write; larger ones go out with sendfile, without a copy through user space.
constexpr uint64_t kInlineMax = 16 * 1024;

void Download(StorageServer* s, const ConnectionPtr& conn, std::string body) {
  if (body.size() < 16 + proto::kGroupNameLen + 1) return conn->Reply(EINVAL);
  uint64_t offset = proto::GetU64(body.data());
  uint64_t length = proto::GetU64(body.data() + 8);
  auto id = ParseGroupAndName(s, std::string_view(body).substr(16));
  if (!id.ok()) return conn->Reply(EINVAL);
  auto path = s->PathForFile(*id);
  if (!path.ok()) return conn->Reply(EINVAL);
  StorePath* p = *path;
  p->reader().Submit([s, p, conn, fid = *id, offset, length] {
    auto opened = StorageServer::OpenFile(p, fid);
    if (!opened.ok()) {
      s->Count(proto::kCntDownload, false);
      return conn->PostReply(opened.status().code() == StatusCode::kNotFound ? ENOENT : EIO);
    }
    int fd = opened->fd;
    uint64_t size = opened->size;
    uint64_t base = opened->offset;  // past the slot header for a trunk file
    // FastDFS answers EINVAL for an offset at or past the end; Depot serves an empty file's
    // empty body instead of FastDFS's EINVAL (doc/protocol.md).
    if (offset > size || (offset == size && size != 0) ||
        static_cast<int64_t>(offset) < 0 || static_cast<int64_t>(length) < 0) {
      close(fd);
      s->Count(proto::kCntDownload, false);
      return conn->PostReply(EINVAL);
    }
    uint64_t len = size - offset;
    if (length > 0 && length < len) len = length;
    s->Count(proto::kCntDownload, true);
    s->Count(proto::kCntDownloadBytes, true, static_cast<int64_t>(len));
    if (len <= kInlineMax) {
      std::string data(len, '\0');
      uint64_t got = 0;
      while (got < len) {
        ssize_t n =
            pread(fd, data.data() + got, len - got, static_cast<off_t>(base + offset + got));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          close(fd);
          return conn->PostReply(EIO);
        }
        got += static_cast<uint64_t>(n);
      }
      close(fd);
      return conn->PostReply(0, std::move(data));
    }
    // sendfile() runs on the loop thread: start reading the range into the page cache now, on
    // this reader thread's time, so that the loop rarely waits for the disk (a cold read of a
    // huge file past this window still can: see doc/architecture.md).
    posix_fadvise(fd, static_cast<off_t>(base + offset),
                  static_cast<off_t>(std::min<uint64_t>(len, 64 << 20)), POSIX_FADV_WILLNEED);
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    conn->loop()->Post([conn, fd, at = base + offset, len, pin = opened->pin] {
      conn->ReplyFile({}, fd, at, len, pin);
    });
  });
}

}  // namespace

void RegisterDownload(StorageServer* s, net::FrameServer* fs) {
  net::CommandSpec spec;
  spec.max_body = 16 + proto::kGroupNameLen + proto::kMaxRemoteNameLen;
  spec.handle = [s](const ConnectionPtr& c, const FrameHeader&, std::string body) {
    Download(s, c, std::move(body));
  };
  fs->Register(proto::kStorageDownload, spec);
}

}  // namespace depot::storage
