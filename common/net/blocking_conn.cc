#include "common/net/blocking_conn.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/base/hash.h"

namespace depot::net {

Result<std::unique_ptr<BlockingConn>> BlockingConn::Connect(const std::string& host, int port,
                                                            int timeout_ms) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string port_s = std::to_string(port);
  int rc = getaddrinfo(host.c_str(), port_s.c_str(), &hints, &res);
  if (rc != 0 || res == nullptr) {
    return Status::Unavailable("cannot resolve", host + ": " + gai_strerror(rc));
  }
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    freeaddrinfo(res);
    return Status::FromErrno(errno, "socket");
  }
  std::string addr = host + ":" + port_s;
  rc = connect(fd, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  if (rc != 0 && errno != EINPROGRESS) {
    int err = errno;
    close(fd);
    return Status::Unavailable("connect " + addr + ":", std::strerror(err));
  }
  if (rc != 0) {
    pollfd p{fd, POLLOUT, 0};
    rc = poll(&p, 1, timeout_ms);
    if (rc == 0) {
      close(fd);
      return Status::TimedOut("connect timed out:", addr);
    }
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      close(fd);
      return Status::Unavailable("connect " + addr + ":", std::strerror(err));
    }
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  auto conn = std::unique_ptr<BlockingConn>(new BlockingConn(fd, host, port));
  return conn;
}

BlockingConn::BlockingConn(int fd, std::string host, int port)
    : fd_(fd), host_(std::move(host)), port_(port), address_(host_ + ":" + std::to_string(port)) {
  // Blocking I/O with kernel timeouts: one syscall per send or recv, no poll round trips.
  int flags = fcntl(fd_, F_GETFL);
  fcntl(fd_, F_SETFL, flags & ~O_NONBLOCK);
  set_timeout_ms(timeout_ms_);
}

BlockingConn::~BlockingConn() { close(fd_); }

void BlockingConn::set_timeout_ms(int ms) {
  timeout_ms_ = ms;
  timeval tv{ms / 1000, (ms % 1000) * 1000};
  setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

Status BlockingConn::IoError(const char* what, int err) {
  healthy_ = false;
  if (err == EAGAIN || err == EWOULDBLOCK) {
    return Status::TimedOut(std::string("no progress (") + what + ") talking to", address_);
  }
  return Status::Unavailable(std::string(what) + " " + address_ + ":", std::strerror(err));
}

Status BlockingConn::SendAll(const void* data, size_t len) {
  const char* p = static_cast<const char*>(data);
  while (len > 0) {
    ssize_t n = send(fd_, p, len, MSG_NOSIGNAL);
    if (n > 0) {
      p += n;
      len -= static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return IoError("send to", errno);
  }
  return Status::OK();
}

Status BlockingConn::SendHeader(uint64_t body_len, uint8_t cmd, uint8_t status) {
  char hdr[proto::kHeaderSize];
  proto::EncodeHeader({body_len, cmd, status}, hdr);
  return SendAll(hdr, sizeof hdr);
}

namespace {

// sendfile() cannot take MSG_NOSIGNAL: block SIGPIPE in this thread while it runs, and swallow a
// SIGPIPE it raised, so that a peer closing mid-upload is an error status, not a dead process.
class ScopedNoSigpipe {
 public:
  ScopedNoSigpipe() {
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, &old_);
  }
  ~ScopedNoSigpipe() {
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    timespec zero{0, 0};
    while (sigtimedwait(&pipe, nullptr, &zero) > 0) {
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }

 private:
  sigset_t old_;
};

}  // namespace

Status BlockingConn::SendFromFile(int file_fd, uint64_t len) {
  ScopedNoSigpipe no_sigpipe;
  while (len > 0) {
    size_t want = len > (1u << 30) ? (1u << 30) : static_cast<size_t>(len);
    ssize_t n = sendfile(fd_, file_fd, nullptr, want);
    if (n > 0) {
      len -= static_cast<uint64_t>(n);
      continue;
    }
    if (n == 0) {
      healthy_ = false;
      return Status::IOError("file ended early while sending to", address_);
    }
    if (errno == EINTR) continue;
    return IoError("sendfile to", errno);
  }
  return Status::OK();
}

Status BlockingConn::RecvExact(void* data, size_t len) {
  char* p = static_cast<char*>(data);
  // Buffered bytes first.
  size_t have = rbuf_.size() - rpos_;
  if (have > 0) {
    size_t n = std::min(have, len);
    std::memcpy(p, rbuf_.data() + rpos_, n);
    rpos_ += n;
    p += n;
    len -= n;
  }
  while (len > 0) {
    if (len < 16384) {
      // Small reads go through the buffer so that a header and its body take one recv().
      rbuf_.resize(65536);
      rpos_ = 0;
      ssize_t n = recv(fd_, rbuf_.data(), rbuf_.size(), 0);
      if (n > 0) {
        rbuf_.resize(static_cast<size_t>(n));
        size_t take = std::min(static_cast<size_t>(n), len);
        std::memcpy(p, rbuf_.data(), take);
        rpos_ = take;
        p += take;
        len -= take;
        continue;
      }
      rbuf_.clear();
      if (n == 0) {
        healthy_ = false;
        return Status::Unavailable("connection closed by", address_);
      }
      if (errno == EINTR) continue;
      return IoError("recv from", errno);
    }
    ssize_t n = recv(fd_, p, len, 0);
    if (n > 0) {
      p += n;
      len -= static_cast<size_t>(n);
      continue;
    }
    if (n == 0) {
      healthy_ = false;
      return Status::Unavailable("connection closed by", address_);
    }
    if (errno == EINTR) continue;
    return IoError("recv from", errno);
  }
  return Status::OK();
}

Result<proto::FrameHeader> BlockingConn::RecvHeader(uint64_t max_body) {
  char hdr[proto::kHeaderSize];
  DEPOT_RETURN_IF_ERROR(RecvExact(hdr, sizeof hdr));
  proto::FrameHeader h = proto::DecodeHeader(hdr);
  if (h.cmd != proto::kResponse) {
    healthy_ = false;
    return Status::Corruption("reply with command " + std::to_string(h.cmd) + " from", address_);
  }
  if (h.body_len > max_body) {
    healthy_ = false;
    return Status::Corruption("reply body of " + std::to_string(h.body_len) +
                              " bytes is over the limit from", address_);
  }
  return h;
}

Result<Reply> BlockingConn::Call(uint8_t cmd, std::string_view body, uint64_t max_reply,
                                 uint8_t status) {
  std::string frame = proto::EncodeFrame(cmd, status, body);
  DEPOT_RETURN_IF_ERROR(SendAll(frame.data(), frame.size()));
  DEPOT_ASSIGN_OR_RETURN(proto::FrameHeader h, RecvHeader(max_reply));
  Reply r;
  r.status = h.status;
  r.body.resize(h.body_len);
  if (h.body_len > 0) DEPOT_RETURN_IF_ERROR(RecvExact(r.body.data(), r.body.size()));
  return r;
}

Status BlockingConn::Authenticate(const std::string& secret) {
  DEPOT_ASSIGN_OR_RETURN(Reply nonce, Call(proto::kDepotAuthChallenge, {}, 64));
  if (nonce.status != 0) return proto::WireToStatus(nonce.status, "auth challenge " + address_);
  DEPOT_ASSIGN_OR_RETURN(Reply ok, Call(proto::kDepotAuthProof, HmacSha256(secret, nonce.body), 0));
  if (ok.status != 0) {
    healthy_ = false;
    return Status::PermissionDenied("cluster_secret refused by", address_);
  }
  return Status::OK();
}

Result<std::unique_ptr<BlockingConn>> ConnPool::Acquire(const std::string& host, int port,
                                                        bool* reused) {
  std::string key = host + ":" + std::to_string(port);
  if (reused) *reused = false;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = idle_.find(key);
    while (it != idle_.end() && !it->second.empty()) {
      auto c = std::move(it->second.back());
      it->second.pop_back();
      // A server closes idle connections (idle_timeout): a pooled connection that already has
      // an EOF (or stray bytes) waiting is dead, and is dropped here rather than failing a call.
      char probe;
      ssize_t n = recv(c->fd(), &probe, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n == 0 || n == 1 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) continue;
      if (reused) *reused = true;
      return c;
    }
  }
  DEPOT_ASSIGN_OR_RETURN(auto c, BlockingConn::Connect(host, port, connect_timeout_ms_));
  c->set_timeout_ms(io_timeout_ms_);
  return c;
}

void ConnPool::Release(std::unique_ptr<BlockingConn> conn) {
  if (!conn || !conn->healthy()) return;
  std::lock_guard<std::mutex> l(mu_);
  auto& v = idle_[conn->address()];
  if (v.size() < max_idle_) v.push_back(std::move(conn));
}

void ConnPool::Forget(const std::string& host, int port) {
  std::lock_guard<std::mutex> l(mu_);
  idle_.erase(host + ":" + std::to_string(port));
}

}  // namespace depot::net
