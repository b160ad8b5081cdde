#include "common/net/frame_server.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <future>
#include <mutex>
#include <unordered_set>

#include "common/base/hash.h"
#include "common/base/logging.h"
#include "common/proto/file_id.h"

namespace depot::net {
namespace {

constexpr size_t kNonceSize = 16;


}  // namespace

// ---------------------------------------------------------------------------------------------
// FrameServer

FrameServer::FrameServer(ServerOptions options) : options_(std::move(options)) {
  CommandSpec auth;
  auth.max_body = 64;
  auth.handle = [this](const ConnectionPtr& c, const proto::FrameHeader& h, std::string body) {
    HandleAuth(c, h, std::move(body));
  };
  commands_[proto::kDepotAuthChallenge] = auth;
  commands_[proto::kDepotAuthProof] = auth;
  CommandSpec active;
  active.max_body = 0;
  active.handle = [](const ConnectionPtr& c, const proto::FrameHeader&, std::string) {
    c->Reply(0);
  };
  commands_[proto::kActiveTest] = active;
  CommandSpec quit;
  quit.max_body = 0;
  quit.handle = [](const ConnectionPtr& c, const proto::FrameHeader&, std::string) {
    c->Close();
  };
  commands_[proto::kQuit] = quit;
}

FrameServer::~FrameServer() { Stop(); }

void FrameServer::Register(uint8_t cmd, CommandSpec spec) { commands_[cmd] = std::move(spec); }

Status FrameServer::Start() {
  // A streamed chunk must fit below the read high-water mark, or the stream would stall.
  options_.read_high_water =
      std::max(options_.read_high_water, options_.chunk_size + proto::kHeaderSize);
  for (const auto& [cmd, spec] : commands_) {
    if (!spec.stream && spec.max_body + proto::kHeaderSize > options_.read_high_water) {
      options_.read_high_water = spec.max_body + proto::kHeaderSize;
    }
  }
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(static_cast<uint16_t>(options_.port));
  if (inet_pton(AF_INET, options_.bind_addr.c_str(), &sin.sin_addr) != 1) {
    return Status::InvalidArgument("bind_addr: not an IPv4 address:", options_.bind_addr);
  }
  accept_loop_ = std::make_unique<EventLoop>();
  listener_ = evconnlistener_new_bind(
      accept_loop_->base(), &FrameServer::OnAccept, this,
      LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 1024,
      reinterpret_cast<sockaddr*>(&sin), sizeof sin);
  if (listener_ == nullptr) {
    return Status::FromErrno(errno, "bind",
                             options_.bind_addr + ":" + std::to_string(options_.port));
  }
  sockaddr_in bound{};
  socklen_t len = sizeof bound;
  getsockname(evconnlistener_get_fd(listener_), reinterpret_cast<sockaddr*>(&bound), &len);
  port_ = ntohs(bound.sin_port);
  evconnlistener_set_error_cb(listener_, &FrameServer::OnAcceptError);
  for (int i = 0; i < std::max(1, options_.threads); ++i) {
    loops_.push_back(std::make_unique<EventLoop>());
    EventLoop* lp = loops_.back().get();
    lp->RunEvery(1000, [this, lp] { SweepTimeouts(lp); });
    lp->Start();
  }
  accept_loop_->Start();
  started_ = true;
  return Status::OK();
}

void FrameServer::CloseAll() {
  if (!started_ || closed_all_) return;
  closed_all_ = true;
  accept_loop_->Stop();
  accept_loop_->Join();
  evconnlistener_free(listener_);
  listener_ = nullptr;
  for (auto& loop : loops_) {
    EventLoop* lp = loop.get();
    std::promise<void> done;
    lp->Post([this, lp, &done] {
      std::vector<std::shared_ptr<Connection>> conns;
      {
        std::lock_guard<std::mutex> l(conns_mu_);
        for (const auto& c : conns_) {
          if (c->loop() == lp) conns.push_back(c);
        }
      }
      for (auto& c : conns) c->Abort();
      done.set_value();
    });
    done.get_future().wait();
  }
}

void FrameServer::Stop() {
  if (!started_) return;
  CloseAll();
  started_ = false;
  for (auto& loop : loops_) loop->Stop();
  for (auto& loop : loops_) loop->Join();
  loops_.clear();
  accept_loop_.reset();
}

void FrameServer::SweepTimeouts(EventLoop* loop) {
  std::vector<ConnectionPtr> mine;
  {
    std::lock_guard<std::mutex> l(conns_mu_);
    for (const auto& c : conns_) {
      if (c->loop() == loop) mine.push_back(c);
    }
  }
  int64_t now = MonotonicNanos();
  for (auto& c : mine) c->CheckTimeout(now);
}

void FrameServer::OnAcceptError(evconnlistener* l, void* arg) {
  auto* self = static_cast<FrameServer*>(arg);
  int err = EVUTIL_SOCKET_ERROR();
  // Out of descriptors (or another accept error): pause accepting for a moment instead of
  // spinning on a listener that stays readable.
  DEPOT_LOG_ERROR("accept failed: {}; pausing accepts for 100 ms",
                  evutil_socket_error_to_string(err));
  evconnlistener_disable(l);
  timeval tv{0, 100 * 1000};
  event_base_once(self->accept_loop_->base(), -1, EV_TIMEOUT,
                  [](evutil_socket_t, short, void* listener) {
                    evconnlistener_enable(static_cast<evconnlistener*>(listener));
                  },
                  l, &tv);
}

void FrameServer::OnAccept(evconnlistener*, int fd, sockaddr* addr, int, void* arg) {
  auto* self = static_cast<FrameServer*>(arg);
  if (self->connections_.load() >= self->options_.max_connections) {
    DEPOT_LOG_WARN("max_connections ({}) reached: refusing a connection",
                   self->options_.max_connections);
    close(fd);
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  std::string peer = "?";
  if (addr->sa_family == AF_INET) {
    auto* sin = reinterpret_cast<sockaddr_in*>(addr);
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof buf);
    peer = std::string(buf) + ":" + std::to_string(ntohs(sin->sin_port));
  }
  EventLoop* loop = self->loops_[self->next_loop_++ % self->loops_.size()].get();
  self->connections_++;
  if (self->observer_) self->observer_->OnConnectionCountChanged(self->connections_.load());
  loop->Post([self, loop, fd, peer] {
    auto conn = std::make_shared<Connection>(self, loop, fd, peer);
    {
      std::lock_guard<std::mutex> l(self->conns_mu_);
      self->conns_.insert(conn);
    }
    conn->Attach();
  });
}

namespace {

bool ParseCidr(const std::string& entry, uint32_t* net, uint32_t* mask) {
  size_t slash = entry.find('/');
  std::string addr = entry.substr(0, slash);
  int bits = 32;
  if (slash != std::string::npos) {
    std::string b = entry.substr(slash + 1);
    if (b.empty() || b.size() > 2 || b.find_first_not_of("0123456789") != std::string::npos) {
      return false;
    }
    bits = std::stoi(b);
    if (bits > 32) return false;
  }
  auto ip = proto::ParseIpv4(addr);
  if (!ip.ok()) return false;
  uint32_t v = *ip;  // host order
  *mask = bits == 0 ? 0 : ~uint32_t{0} << (32 - bits);
  *net = v & *mask;
  return true;
}

}  // namespace

Status ValidateAllowEntry(const std::string& entry) {
  uint32_t net, mask;
  if (!ParseCidr(entry, &net, &mask)) {
    return Status::InvalidArgument("expected an IPv4 address or a.b.c.d/n, got", entry);
  }
  return Status::OK();
}

bool HostAllowed(const std::string& ip, const std::vector<std::string>& allow) {
  if (allow.empty()) return true;
  auto addr = proto::ParseIpv4(ip);
  if (!addr.ok()) return false;
  uint32_t v = *addr;
  for (const auto& e : allow) {
    uint32_t net, mask;
    if (ParseCidr(e, &net, &mask) && (v & mask) == net) return true;
  }
  return false;
}

void FrameServer::HandleAuth(const ConnectionPtr& c, const proto::FrameHeader& h,
                             std::string body) {
  if (options_.cluster_secret.empty()) {
    DEPOT_LOG_WARN("{}: internal handshake refused: no cluster_secret configured", c->peer());
    return c->ErrorAndClose(EACCES);
  }
  if (!HostAllowed(c->peer_ip(), options_.allow_hosts)) {
    DEPOT_LOG_WARN("{}: internal handshake refused: address not in allow_hosts", c->peer());
    return c->ErrorAndClose(EACCES);
  }
  if (h.cmd == proto::kDepotAuthChallenge) {
    c->nonce_ = SecureRandomBytes(kNonceSize);
    return c->Reply(0, c->nonce_);
  }
  std::string expect = HmacSha256(options_.cluster_secret, c->nonce_);
  if (c->nonce_.empty() || !ConstantTimeEquals(expect, body)) {
    DEPOT_LOG_WARN("{}: bad cluster secret proof; closing", c->peer());
    return c->ErrorAndClose(EACCES);
  }
  c->nonce_.clear();
  c->authenticated_ = true;
  c->Reply(0);
}

// ---------------------------------------------------------------------------------------------
// Connection

Connection::Connection(FrameServer* server, EventLoop* loop, int fd, std::string peer)
    : server_(server), loop_(loop), fd_(fd), peer_(std::move(peer)) {}

Connection::~Connection() { Release(); }

void Connection::Release() {
  if (read_ev_ != nullptr) event_free(read_ev_);
  if (write_ev_ != nullptr) event_free(write_ev_);
  read_ev_ = write_ev_ = nullptr;
  if (in_ != nullptr) evbuffer_free(in_);
  if (out_ != nullptr) evbuffer_free(out_);  // closes descriptors of unsent file segments
  in_ = out_ = nullptr;
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  attached_ = false;
}

std::string Connection::peer_ip() const { return peer_.substr(0, peer_.rfind(':')); }

// The connection does its own socket I/O on two persistent events instead of a bufferevent:
// the read event stays registered for the connection's life (a bufferevent re-registers its
// write event for every reply, and asks FIONREAD before every read), and replies are written at
// once, the write event being armed only when the socket is full.
void Connection::Attach() {
  evutil_make_socket_nonblocking(fd_);
  in_ = evbuffer_new();
  out_ = evbuffer_new();
  read_ev_ = event_new(loop_->base(), fd_, EV_READ | EV_PERSIST, &Connection::OnReadable, this);
  write_ev_ = event_new(loop_->base(), fd_, EV_WRITE | EV_PERSIST, &Connection::OnWritable, this);
  if (in_ == nullptr || out_ == nullptr || read_ev_ == nullptr || write_ev_ == nullptr) {
    Abort();
    return;
  }
  // Without this flag evbuffer_add_file() maps or reads the whole file into memory instead of
  // sending it with sendfile() (the 2 GiB RSS test catches that).
  evbuffer_set_flags(out_, EVBUFFER_FLAG_DRAINS_TO_FD);
  attached_ = true;
  last_progress_ns_ = MonotonicNanos();
  SetReading(true);
}

void Connection::SetReading(bool on) {
  if (on == reading_ || !attached_) return;
  reading_ = on;
  if (on) {
    event_add(read_ev_, nullptr);
  } else {
    event_del(read_ev_);
  }
}

void Connection::CheckTimeout(int64_t now_ns) {
  if (closed_ || !attached_) return;
  const ServerOptions& opt = server_->options_;
  size_t in = evbuffer_get_length(in_);
  bool sending = evbuffer_get_length(out_) > 0;
  bool server_busy = state_ == State::kBusy || (state_ == State::kStream && chunk_in_flight_);
  if (server_busy && !sending) return;  // waiting for our own disk work, not for the peer
  int64_t quiet_s = (now_ns - last_progress_ns_) / 1'000'000'000;
  // A reply going out or a frame half received: the peer must make progress within
  // network_timeout. Nothing pending: the connection may idle for idle_timeout.
  bool idle = !sending && state_ == State::kHeader && in == 0;
  int limit = idle ? opt.idle_timeout_s : opt.network_timeout_s;
  if (quiet_s >= limit) {
    DEPOT_LOG_DEBUG("{}: {} for {}s, closing", peer_,
                    idle ? "idle" : (sending ? "not reading its reply" : "stalled mid-frame"),
                    quiet_s);
    Abort();
  }
}

void Connection::OnReadable(int, short, void* arg) {
  auto self = static_cast<Connection*>(arg)->shared_from_this();
  self->ReadSocket();
}

void Connection::ReadSocket() {
  const size_t high = server_->options_.read_high_water;
  for (;;) {
    size_t have = evbuffer_get_length(in_);
    if (have >= high) {
      SetReading(false);  // back-pressure: Process() resumes reading once it has consumed
      break;
    }
    evbuffer_iovec vec[2];
    size_t want = std::min<size_t>(high - have, 256 * 1024);
    int nvec = evbuffer_reserve_space(in_, static_cast<ev_ssize_t>(want), vec, 2);
    if (nvec <= 0) return Abort();
    iovec iov[2];
    for (int i = 0; i < nvec; ++i) {
      iov[i].iov_base = vec[i].iov_base;
      iov[i].iov_len = vec[i].iov_len;
    }
    ssize_t n = readv(fd_, iov, nvec);
    if (n < 0) {
      evbuffer_commit_space(in_, vec, 0);
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      return Abort();
    }
    if (n == 0) {
      evbuffer_commit_space(in_, vec, 0);
      return Abort();  // the peer closed; nothing it sent after can be answered
    }
    size_t left = static_cast<size_t>(n);
    for (int i = 0; i < nvec; ++i) {
      size_t take = std::min(left, vec[i].iov_len);
      vec[i].iov_len = take;
      left -= take;
    }
    evbuffer_commit_space(in_, vec, nvec);
    last_progress_ns_ = MonotonicNanos();
    if (static_cast<size_t>(n) < want) break;  // drained the socket
  }
  Process();
}

void Connection::OnWritable(int, short, void* arg) {
  auto self = static_cast<Connection*>(arg)->shared_from_this();
  self->Flush();
}

void Connection::Flush() {
  if (closed_ || !attached_) return;
  while (evbuffer_get_length(out_) > 0) {
    int n = evbuffer_write(out_, fd_);
    if (n > 0) {
      last_progress_ns_ = MonotonicNanos();
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    // libevent's sendfile path reports a full socket as 0, its writev path as EAGAIN.
    if (n == 0 || errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!writing_) {
        writing_ = true;
        event_add(write_ev_, nullptr);
      }
      return;
    }
    return Abort();
  }
  if (writing_) {
    writing_ = false;
    event_del(write_ev_);
  }
  if (state_ == State::kClosing) return Abort();
  if (state_ == State::kHeader && !in_process_) Process();  // resume after the high-water mark
}

void Connection::Process() {
  if (closed_ || !attached_ || in_process_) return;
  auto self = shared_from_this();
  in_process_ = true;
  struct Reset {
    bool* flag;
    ~Reset() { *flag = false; }
  } reset{&in_process_};
  evbuffer* in = in_;
  const ServerOptions& opt = server_->options_;
  for (;;) {
    if (closed_) return;
    // Read more from the socket whenever the input buffer has room again.
    if (!reading_ && state_ != State::kClosing && evbuffer_get_length(in) < opt.read_high_water) {
      SetReading(true);
    }
    switch (state_) {
      case State::kHeader: {
        // Above the high-water mark, wait for the output to drain: OnWrite runs Process() again.
        if (evbuffer_get_length(out_) > opt.write_high_water) return;
        if (evbuffer_get_length(in) < proto::kHeaderSize) return;
        char hdr[proto::kHeaderSize];
        evbuffer_remove(in, hdr, sizeof hdr);
        request_ = proto::DecodeHeader(hdr);
        request_start_ns_ = MonotonicNanos();
        auto it = server_->commands_.find(request_.cmd);
        if (it == server_->commands_.end()) {
          // Depot's internal range: whatever this daemon does not serve there is still refused
          // like an internal command to anyone who has not proved the cluster secret.
          if (proto::IsInternalRange(request_.cmd) && !authenticated_) {
            DEPOT_LOG_WARN("{}: internal command {} without the cluster handshake", peer_,
                           request_.cmd);
            return ErrorAndClose(EACCES);
          }
          DEPOT_LOG_DEBUG("{}: unknown command {}", peer_, request_.cmd);
          if (request_.body_len > 64 * 1024) return ErrorAndClose(EINVAL);
          remaining_ = request_.body_len;
          state_ = State::kDiscard;
          continue;
        }
        spec_ = &it->second;
        if (spec_->internal && !authenticated_) {
          DEPOT_LOG_WARN("{}: internal command {} without the cluster handshake", peer_,
                         request_.cmd);
          return ErrorAndClose(EACCES);
        }
        if (request_.body_len > spec_->max_body) {
          DEPOT_LOG_WARN("{}: command {} announces a {}-byte body (limit {}); closing", peer_,
                         request_.cmd, request_.body_len, spec_->max_body);
          return ErrorAndClose(EINVAL);
        }
        if (spec_->stream) {
          remaining_ = request_.body_len;
          chunk_in_flight_ = false;
          state_ = State::kStream;
          stream_ = spec_->stream(self, request_);
          continue;
        }
        state_ = State::kBody;
        continue;
      }
      case State::kBody: {
        if (evbuffer_get_length(in) < request_.body_len) return;
        std::string body(request_.body_len, '\0');
        if (!body.empty()) evbuffer_remove(in, body.data(), body.size());
        state_ = State::kBusy;
        spec_->handle(self, request_, std::move(body));
        continue;
      }
      case State::kDiscard: {
        size_t n = std::min<uint64_t>(evbuffer_get_length(in), remaining_);
        evbuffer_drain(in, n);
        remaining_ -= n;
        if (remaining_ > 0) return;
        state_ = State::kBusy;
        Reply(EINVAL);
        continue;
      }
      case State::kStream: {
        if (chunk_in_flight_ || !stream_) return;
        // Hand over whole chunks (or the whole rest of the body): every chunk costs a trip to a
        // disk thread, so a 64 KiB upload should make one trip, not one per TCP segment.
        size_t avail = evbuffer_get_length(in);
        size_t want = std::min<uint64_t>(remaining_, opt.chunk_size);
        if (avail < want) return;
        size_t n = want;
        std::string chunk(n, '\0');
        if (n > 0) evbuffer_remove(in, chunk.data(), n);
        remaining_ -= n;
        bool last = remaining_ == 0;
        chunk_in_flight_ = true;
        if (last) state_ = State::kBusy;
        stream_->OnChunk(self, std::move(chunk), last);
        continue;
      }
      case State::kBusy:
      case State::kClosing:
        return;
    }
  }
}

void Connection::ContinueBody() {
  if (loop_->InLoopThread() && in_process_) {
    chunk_in_flight_ = false;  // Process() picks up the next chunk when the handler returns
    last_progress_ns_ = MonotonicNanos();
    return;
  }
  auto self = shared_from_this();
  loop_->Post([self] {
    self->chunk_in_flight_ = false;
    // Our own disk work does not count against the peer's timeout.
    self->last_progress_ns_ = MonotonicNanos();
    self->Process();
  });
}

void Connection::FinishRequest(uint64_t bytes_out, uint8_t status) {
  last_progress_ns_ = MonotonicNanos();
  if (server_->observer_) {
    double secs = static_cast<double>(MonotonicNanos() - request_start_ns_) / 1e9;
    server_->observer_->OnRequestDone(request_.cmd, status, secs,
                                      proto::kHeaderSize + request_.body_len,
                                      proto::kHeaderSize + bytes_out);
  }
  bool body_unread = state_ == State::kStream && remaining_ > 0;
  if (stream_) {
    // The stream may be the caller: destroy it after the current call chain returns.
    loop_->Post([s = std::shared_ptr<BodyStream>(std::move(stream_))] {});
  }
  if (body_unread) {
    // Replied before the body was read (an early error): the stream cannot be resynchronised.
    Close();
    return;
  }
  state_ = State::kHeader;
  if (!in_process_) Process();  // pipelined requests already buffered
}

void Connection::Reply(uint8_t status, std::string_view body) {
  if (closed_ || !attached_) return;
  char hdr[proto::kHeaderSize];
  proto::EncodeHeader({body.size(), proto::kResponse, status}, hdr);
  evbuffer_add(out_, hdr, sizeof hdr);
  if (!body.empty()) evbuffer_add(out_, body.data(), body.size());
  Flush();
  FinishRequest(body.size(), status);
}

void Connection::PostReply(uint8_t status, std::string body) {
  auto self = shared_from_this();
  loop_->Post([self, status, body = std::move(body)] { self->Reply(status, body); });
}

void Connection::PostReplyAndClose(uint8_t status) {
  auto self = shared_from_this();
  loop_->Post([self, status] { self->ErrorAndClose(status); });
}

void Connection::ReplyFile(std::string head, int fd, uint64_t offset, uint64_t len,
                           std::shared_ptr<void> keep) {
  if (closed_ || !attached_) {
    close(fd);
    return;
  }
  char hdr[proto::kHeaderSize];
  proto::EncodeHeader({len, proto::kResponse, 0}, hdr);
  evbuffer_add(out_, hdr, sizeof hdr);
  if (!head.empty()) evbuffer_add(out_, head.data(), head.size());
  uint64_t file_len = len - head.size();
  if (file_len > 0) {
    // A file segment closes fd when its last byte is sent (or the buffer is dropped); `keep` is
    // released by the segment's cleanup callback at the same moment.
    evbuffer_file_segment* seg = evbuffer_file_segment_new(
        fd, static_cast<ev_off_t>(offset), static_cast<ev_off_t>(file_len), EVBUF_FS_CLOSE_ON_FREE);
    if (seg == nullptr) close(fd);
    if (seg != nullptr && keep) {
      evbuffer_file_segment_add_cleanup_cb(
          seg,
          [](evbuffer_file_segment const*, int, void* arg) {
            delete static_cast<std::shared_ptr<void>*>(arg);
          },
          new std::shared_ptr<void>(std::move(keep)));
    }
    bool queued = seg != nullptr &&
                  evbuffer_add_file_segment(out_, seg, 0, static_cast<ev_off_t>(file_len)) == 0;
    if (seg != nullptr) evbuffer_file_segment_free(seg);
    if (!queued) {
      // The header announcing `len` bytes is queued: the stream cannot be kept in step.
      DEPOT_LOG_ERROR("{}: cannot queue a file reply; closing", peer_);
      return Abort();
    }
  } else {
    close(fd);
  }
  Flush();
  FinishRequest(len, 0);
}

void Connection::ErrorAndClose(uint8_t status) {
  if (closed_ || !attached_) return;
  char hdr[proto::kHeaderSize];
  proto::EncodeHeader({0, proto::kResponse, status}, hdr);
  evbuffer_add(out_, hdr, sizeof hdr);
  if (server_->observer_) {
    server_->observer_->OnRequestDone(request_.cmd, status, 0, proto::kHeaderSize,
                                      proto::kHeaderSize);
  }
  Close();
}

void Connection::Close() {
  if (closed_ || !attached_) return;
  state_ = State::kClosing;
  SetReading(false);
  Flush();  // aborts once everything is out
}

void Connection::Abort() {
  if (closed_) return;
  closed_ = true;
  auto self = shared_from_this();
  if (stream_) {
    stream_->OnAbort();
    loop_->Post([s = std::shared_ptr<BodyStream>(std::move(stream_))] {});
  }
  Release();
  if (close_hook_) {
    auto hook = std::move(close_hook_);
    close_hook_ = nullptr;
    hook();
  }
  server_->connections_--;
  if (server_->observer_) server_->observer_->OnConnectionCountChanged(server_->connections_);
  std::lock_guard<std::mutex> l(server_->conns_mu_);
  server_->conns_.erase(self);
}

}  // namespace depot::net
