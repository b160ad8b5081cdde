// BlockingConn: a blocking TCP connection speaking the frame protocol, with deadlines on every
// call (poll-based). Used by libdepot, by the storage's tracker reporter and by tests.
// ConnPool keeps idle connections per address. A BlockingConn is used by one thread at a time;
// ConnPool is thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/proto/protocol.h"

namespace depot::net {

struct Reply {
  uint8_t status = 0;
  std::string body;
};

class BlockingConn {
 public:
  // Connects with a deadline. Unavailable when refused, TimedOut on timeout.
  static Result<std::unique_ptr<BlockingConn>> Connect(const std::string& host, int port,
                                                       int timeout_ms);
  ~BlockingConn();

  // Deadline of each send/recv (SO_SNDTIMEO / SO_RCVTIMEO).
  void set_timeout_ms(int ms);
  const std::string& address() const { return address_; }
  const std::string& host() const { return host_; }
  int port() const { return port_; }
  int fd() const { return fd_; }
  // False once any I/O failed; such a connection must not go back to a pool.
  bool healthy() const { return healthy_; }
  void MarkBroken() { healthy_ = false; }

  Status SendAll(const void* data, size_t len);
  Status SendHeader(uint64_t body_len, uint8_t cmd, uint8_t status = 0);
  // Sends `len` bytes of file `fd` from its current offset (sendfile).
  Status SendFromFile(int file_fd, uint64_t len);
  Status RecvExact(void* data, size_t len);
  // Reads a reply header; checks cmd == 100 and body_len <= max_body.
  Result<proto::FrameHeader> RecvHeader(uint64_t max_body);
  // Sends one frame and reads the whole reply (body <= max_reply bytes).
  Result<Reply> Call(uint8_t cmd, std::string_view body, uint64_t max_reply = 1 << 20,
                     uint8_t status = 0);
  // The cluster-secret handshake for internal commands.
  Status Authenticate(const std::string& secret);

 private:
  BlockingConn(int fd, std::string host, int port);
  Status IoError(const char* what, int err);

  // Bytes received but not yet consumed: replies are read in as few recv() calls as possible.
  std::string rbuf_;
  size_t rpos_ = 0;

  int fd_;
  std::string host_;
  int port_;
  std::string address_;
  int timeout_ms_ = 30000;
  bool healthy_ = true;
};

class ConnPool {
 public:
  explicit ConnPool(int connect_timeout_ms = 5000, int io_timeout_ms = 30000,
                    size_t max_idle_per_addr = 64)
      : connect_timeout_ms_(connect_timeout_ms),
        io_timeout_ms_(io_timeout_ms),
        max_idle_(max_idle_per_addr) {}

  // An idle pooled connection to host:port, or a new one. `reused` (optional) tells which:
  // a reused connection may have been closed by the server meanwhile.
  Result<std::unique_ptr<BlockingConn>> Acquire(const std::string& host, int port,
                                                bool* reused = nullptr);
  // Returns a connection; broken ones are dropped.
  void Release(std::unique_ptr<BlockingConn> conn);
  // Drops idle connections to an address (after it failed).
  void Forget(const std::string& host, int port);

 private:
  int connect_timeout_ms_;
  int io_timeout_ms_;
  size_t max_idle_;
  std::mutex mu_;
  std::map<std::string, std::vector<std::unique_ptr<BlockingConn>>> idle_;  // GUARDED_BY(mu_)
};

}  // namespace depot::net
