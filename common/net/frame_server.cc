#include "common/net/frame_server.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <unordered_set>

#include "common/base/hash.h"
#include "common/base/logging.h"

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
  for (int i = 0; i < std::max(1, options_.threads); ++i) {
    loops_.push_back(std::make_unique<EventLoop>());
    loops_.back()->Start();
  }
  accept_loop_->Start();
  started_ = true;
  return Status::OK();
}

void FrameServer::Stop() {
  if (!started_) return;
  started_ = false;
  accept_loop_->Stop();
  accept_loop_->Join();
  evconnlistener_free(listener_);
  listener_ = nullptr;
  for (auto& loop : loops_) {
    EventLoop* lp = loop.get();
    lp->Post([this, lp] {
      std::vector<std::shared_ptr<Connection>> conns;
      {
        std::lock_guard<std::mutex> l(conns_mu_);
        for (const auto& c : conns_) {
          if (c->loop() == lp) conns.push_back(c);
        }
      }
      for (auto& c : conns) c->Abort();
    });
    lp->Stop();
  }
  for (auto& loop : loops_) loop->Join();
  loops_.clear();
  accept_loop_.reset();
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

void FrameServer::HandleAuth(const ConnectionPtr& c, const proto::FrameHeader& h,
                             std::string body) {
  if (options_.cluster_secret.empty()) {
    DEPOT_LOG_WARN("{}: internal handshake refused: no cluster_secret configured", c->peer());
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

Connection::~Connection() {
  if (bev_ != nullptr) bufferevent_free(bev_);
}

std::string Connection::peer_ip() const { return peer_.substr(0, peer_.rfind(':')); }

void Connection::Attach() {
  bev_ = bufferevent_socket_new(loop_->base(), fd_, BEV_OPT_CLOSE_ON_FREE);
  if (bev_ == nullptr) {
    close(fd_);
    closed_ = true;
    Abort();
    return;
  }
  bufferevent_setcb(bev_, &Connection::OnRead, &Connection::OnWrite, &Connection::OnEvent, this);
  bufferevent_setwatermark(bev_, EV_READ, 0, server_->options_.read_high_water);
  SetReadTimeout(server_->options_.idle_timeout_s);
  bufferevent_enable(bev_, EV_READ | EV_WRITE);
}

// seconds == 0: no read timeout (libevent treats a zero timeval as none).
void Connection::SetReadTimeout(int seconds) {
  if (seconds == current_read_timeout_) return;
  current_read_timeout_ = seconds;
  timeval rt{seconds, 0};
  timeval wt{server_->options_.network_timeout_s, 0};
  bufferevent_set_timeouts(bev_, &rt, &wt);
}

void Connection::OnRead(bufferevent*, void* arg) {
  auto self = static_cast<Connection*>(arg)->shared_from_this();
  self->Process();
}

void Connection::OnWrite(bufferevent*, void* arg) {
  auto self = static_cast<Connection*>(arg)->shared_from_this();
  if (self->state_ == State::kClosing) {
    self->Abort();
  } else if (self->state_ == State::kHeader) {
    self->Process();
  }
}

void Connection::OnEvent(bufferevent*, short what, void* arg) {
  auto self = static_cast<Connection*>(arg)->shared_from_this();
  if (what & BEV_EVENT_TIMEOUT) {
    DEPOT_LOG_DEBUG("{}: timed out ({}), closing", self->peer_,
                    (what & BEV_EVENT_READING) ? "read" : "write");
  }
  self->Abort();
}

void Connection::Process() {
  if (closed_ || bev_ == nullptr || in_process_) return;
  auto self = shared_from_this();
  in_process_ = true;
  struct Reset {
    bool* flag;
    ~Reset() { *flag = false; }
  } reset{&in_process_};
  evbuffer* in = bufferevent_get_input(bev_);
  const ServerOptions& opt = server_->options_;
  for (;;) {
    if (closed_) return;
    switch (state_) {
      case State::kHeader: {
        // While a reply is still going out the connection is not idle: only the write timeout
        // (no progress for network_timeout) applies, however long a large download takes.
        // OnWrite runs Process() again once the output has drained.
        size_t pending_out = evbuffer_get_length(bufferevent_get_output(bev_));
        if (pending_out > opt.write_high_water) {
          SetReadTimeout(0);
          return;
        }
        size_t avail = evbuffer_get_length(in);
        if (avail < proto::kHeaderSize) {
          SetReadTimeout(avail > 0 ? opt.network_timeout_s
                                   : (pending_out > 0 ? 0 : opt.idle_timeout_s));
          return;
        }
        char hdr[proto::kHeaderSize];
        evbuffer_remove(in, hdr, sizeof hdr);
        request_ = proto::DecodeHeader(hdr);
        request_start_ns_ = MonotonicNanos();
        SetReadTimeout(opt.network_timeout_s);
        auto it = server_->commands_.find(request_.cmd);
        if (it == server_->commands_.end()) {
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
    return;
  }
  auto self = shared_from_this();
  loop_->Post([self] {
    self->chunk_in_flight_ = false;
    self->Process();
  });
}

void Connection::FinishRequest(uint64_t bytes_out, uint8_t status) {
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
  if (closed_ || bev_ == nullptr) return;
  char hdr[proto::kHeaderSize];
  proto::EncodeHeader({body.size(), proto::kResponse, status}, hdr);
  evbuffer* out = bufferevent_get_output(bev_);
  evbuffer_add(out, hdr, sizeof hdr);
  if (!body.empty()) evbuffer_add(out, body.data(), body.size());
  FinishRequest(body.size(), status);
}

void Connection::ReplyFile(std::string head, int fd, uint64_t offset, uint64_t len) {
  if (closed_ || bev_ == nullptr) {
    close(fd);
    return;
  }
  char hdr[proto::kHeaderSize];
  proto::EncodeHeader({len, proto::kResponse, 0}, hdr);
  evbuffer* out = bufferevent_get_output(bev_);
  evbuffer_add(out, hdr, sizeof hdr);
  if (!head.empty()) evbuffer_add(out, head.data(), head.size());
  uint64_t file_len = len - head.size();
  if (file_len > 0) {
    evbuffer_add_file(out, fd, static_cast<ev_off_t>(offset), static_cast<ev_off_t>(file_len));
  } else {
    close(fd);
  }
  FinishRequest(len, 0);
}

void Connection::ErrorAndClose(uint8_t status) {
  if (closed_ || bev_ == nullptr) return;
  char hdr[proto::kHeaderSize];
  proto::EncodeHeader({0, proto::kResponse, status}, hdr);
  evbuffer_add(bufferevent_get_output(bev_), hdr, sizeof hdr);
  if (server_->observer_) {
    server_->observer_->OnRequestDone(request_.cmd, status, 0, proto::kHeaderSize,
                                      proto::kHeaderSize);
  }
  Close();
}

void Connection::Close() {
  if (closed_ || bev_ == nullptr) return;
  state_ = State::kClosing;
  bufferevent_disable(bev_, EV_READ);
  if (evbuffer_get_length(bufferevent_get_output(bev_)) == 0) Abort();
}

void Connection::Abort() {
  if (closed_) return;
  closed_ = true;
  auto self = shared_from_this();
  if (stream_) {
    stream_->OnAbort();
    loop_->Post([s = std::shared_ptr<BodyStream>(std::move(stream_))] {});
  }
  if (bev_ != nullptr) {
    bufferevent_free(bev_);
    bev_ = nullptr;
  }
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
