// Hand-built frames for the protocol tests (protocol_test.cc, bad_input_test.cc). Requests are
// assembled byte by byte from doc/protocol.md, on purpose without proto::EncodeFrame/AppendFixed
// or libdepot, so that the tests check the server against the document rather than against the
// project's own encoder. Replies are read raw and taken apart by the tests.
#pragma once

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/net/blocking_conn.h"

namespace depot::testing::wire {

// 8 bytes, big-endian.
inline std::string U64(uint64_t v) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i) {
    out[static_cast<size_t>(i)] = static_cast<char>(v & 0xFF);
    v >>= 8;
  }
  return out;
}

inline uint64_t GetU64(std::string_view p, size_t at = 0) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(p[at + i]);
  return v;
}

inline uint32_t GetU32(std::string_view p, size_t at = 0) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(p[at + i]);
  return v;
}

// `s` NUL-padded to exactly `width` bytes (the test fails if it does not fit).
inline std::string Pad(std::string_view s, size_t width) {
  EXPECT_LE(s.size(), width) << "field too long for its width: " << s;
  std::string out(s.substr(0, width));
  out.append(width - out.size(), '\0');
  return out;
}

// The text of a NUL-padded field.
inline std::string Text(std::string_view field) {
  size_t nul = field.find('\0');
  return std::string(nul == std::string_view::npos ? field : field.substr(0, nul));
}

// Header (body length 8 BE, command, status) followed by the body.
inline std::string Frame(uint8_t cmd, std::string_view body, uint8_t status = 0) {
  std::string out = U64(body.size());
  out.push_back(static_cast<char>(cmd));
  out.push_back(static_cast<char>(status));
  out.append(body);
  return out;
}

// A header alone, announcing any length.
inline std::string Header(uint64_t body_len, uint8_t cmd, uint8_t status = 0) {
  std::string out = U64(body_len);
  out.push_back(static_cast<char>(cmd));
  out.push_back(static_cast<char>(status));
  return out;
}

// group16 + remote name: the body of 12, 15, 22 and of the tracker's 102/103/105.
inline std::string GroupAndName(std::string_view group, std::string_view remote) {
  return Pad(group, 16) + std::string(remote);
}

struct RawReply {
  bool ok = false;  // a whole reply arrived
  uint64_t body_len = 0;
  uint8_t cmd = 0;
  uint8_t status = 0;
  std::string body;
};

// A raw TCP connection; the bytes go out exactly as given.
class Raw {
 public:
  explicit Raw(int port, int timeout_ms = 10000) : Raw("127.0.0.1", port, timeout_ms) {}
  // To a daemon on another loopback address (storages of a MiniCluster: Daemon::host()).
  Raw(const std::string& host, int port, int timeout_ms = 10000) {
    auto c = net::BlockingConn::Connect(host, port, 5000);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    if (c.ok()) {
      conn_ = std::move(*c);
      conn_->set_timeout_ms(timeout_ms);
    }
  }
  bool connected() const { return conn_ != nullptr; }
  int fd() const { return conn_ ? conn_->fd() : -1; }

  bool Send(std::string_view bytes) {
    return conn_ && conn_->SendAll(bytes.data(), bytes.size()).ok();
  }
  // Reads one reply: the 10-byte header, then up to `max_body` bytes of body.
  RawReply Read(uint64_t max_body = 64 << 20) {
    RawReply r;
    if (!conn_) return r;
    char h[10];
    if (!conn_->RecvExact(h, sizeof h).ok()) return r;
    r.body_len = GetU64(std::string_view(h, 10));
    r.cmd = static_cast<uint8_t>(h[8]);
    r.status = static_cast<uint8_t>(h[9]);
    if (r.body_len > max_body) return r;
    r.body.resize(r.body_len);
    if (r.body_len > 0 && !conn_->RecvExact(r.body.data(), r.body.size()).ok()) return r;
    r.ok = true;
    return r;
  }
  RawReply Call(std::string_view frame) {
    if (!Send(frame)) return {};
    return Read();
  }
  // Reads exactly n bytes (for a body read by hand).
  bool ReadExact(std::string* out, size_t n) {
    out->resize(n);
    return conn_ && (n == 0 || conn_->RecvExact(out->data(), n).ok());
  }
  // True when the server has closed the connection (EOF or reset) within `timeout_ms`;
  // bytes that arrive first are skipped.
  bool WaitClosed(int timeout_ms) {
    if (!conn_) return false;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                      deadline - std::chrono::steady_clock::now())
                      .count();
      if (left < 0) return false;
      pollfd p{conn_->fd(), POLLIN, 0};
      int rc = poll(&p, 1, static_cast<int>(left));
      if (rc < 0 && errno == EINTR) continue;
      if (rc <= 0) return false;
      char buf[4096];
      ssize_t n = recv(conn_->fd(), buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0) return true;
      if (n < 0 && (errno == ECONNRESET || errno == EPIPE)) return true;
    }
  }
  // Non-blocking: true if the server has closed the connection already.
  bool ClosedNow() {
    if (!conn_) return false;
    char c;
    ssize_t n = recv(conn_->fd(), &c, 1, MSG_DONTWAIT | MSG_PEEK);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
  }
  void Close() { conn_.reset(); }

 private:
  std::unique_ptr<net::BlockingConn> conn_;
};

// A whole success reply with the expected body length, command 100.
inline ::testing::AssertionResult IsOk(const RawReply& r, uint64_t body_len) {
  if (!r.ok) return ::testing::AssertionFailure() << "no complete reply";
  if (r.cmd != 100) return ::testing::AssertionFailure() << "reply command " << int(r.cmd);
  if (r.status != 0) return ::testing::AssertionFailure() << "status " << int(r.status);
  if (r.body.size() != body_len) {
    return ::testing::AssertionFailure()
           << "body of " << r.body.size() << " bytes, expected " << body_len;
  }
  return ::testing::AssertionSuccess();
}

// An error reply: command 100, the status, no body.
inline ::testing::AssertionResult IsError(const RawReply& r, uint8_t status) {
  if (!r.ok) return ::testing::AssertionFailure() << "no complete reply";
  if (r.cmd != 100) return ::testing::AssertionFailure() << "reply command " << int(r.cmd);
  if (r.status != status) {
    return ::testing::AssertionFailure()
           << "status " << int(r.status) << ", expected " << int(status);
  }
  if (!r.body.empty()) return ::testing::AssertionFailure() << "error reply with a body";
  return ::testing::AssertionSuccess();
}

// Request bodies, field by field as doc/protocol.md lists them.
inline std::string UploadBody(uint8_t path_index, std::string_view ext, std::string_view data) {
  std::string b(1, static_cast<char>(path_index));
  b += U64(data.size());
  b += Pad(ext, 6);
  b.append(data);
  return b;
}
inline std::string DownloadBody(uint64_t offset, uint64_t length, std::string_view group,
                                std::string_view remote) {
  return U64(offset) + U64(length) + GroupAndName(group, remote);
}
inline std::string SetMetaBody(char flag, std::string_view group, std::string_view remote,
                               std::string_view meta) {
  std::string b = U64(remote.size()) + U64(meta.size());
  b.push_back(flag);
  b += Pad(group, 16);
  b.append(remote);
  b.append(meta);
  return b;
}

}  // namespace depot::testing::wire
