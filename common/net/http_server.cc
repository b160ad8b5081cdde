#include "common/net/http_server.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <future>
#include <unordered_set>

#include "common/base/logging.h"
#include "common/net/event_loop.h"

namespace depot::net {

namespace {

constexpr size_t kReadChunk = 64 << 10;
constexpr size_t kOutHighWater = 1 << 20;  // stop reading pipelined requests past this backlog
constexpr size_t kStreamDrainMax = 256 << 10;
constexpr int kLingerSeconds = 2;

int64_t NowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

const std::string& CachedDate() {
  thread_local int64_t at = -1;
  thread_local std::string text;
  int64_t now = time(nullptr);
  if (now != at) {
    at = now;
    text = HttpDate(now);
  }
  return text;
}

bool NoBodyStatus(int status) { return status < 200 || status == 204 || status == 304; }

void SetTimeouts(int fd, int seconds) {
  timeval tv{seconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

void SetBlocking(int fd, bool blocking) {
  int flags = fcntl(fd, F_GETFL, 0);
  if (flags < 0) return;
  fcntl(fd, F_SETFL, blocking ? (flags & ~O_NONBLOCK) : (flags | O_NONBLOCK));
}

std::string StatusLine(int status) {
  std::string s = "HTTP/1.1 ";
  s += std::to_string(status);
  s += ' ';
  s += HttpServer::Reason(status);
  s += "\r\n";
  return s;
}

}  // namespace

Result<int> ListenTcp(const std::string& bind_addr, int port, int* bound_port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, bind_addr.c_str(), &addr.sin_addr) != 1) {
    return Status::InvalidArgument("bind address:", bind_addr);
  }
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::FromErrno(errno, "socket");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, 1024) != 0) {
    Status s = Status::FromErrno(errno, "bind/listen", bind_addr + ":" + std::to_string(port));
    close(fd);
    return s;
  }
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  *bound_port = ntohs(addr.sin_port);
  return fd;
}

std::string HttpDate(int64_t unix_seconds) {
  time_t t = static_cast<time_t>(unix_seconds);
  tm g{};
  gmtime_r(&t, &g);
  char buf[64];
  strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &g);
  return buf;
}

const char* HttpServer::Reason(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 423: return "Locked";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

// ---- HttpStream: blocking I/O on a worker ----

Status HttpStream::SendAll(const char* data, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd_, data, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      broken_ = true;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Status::TimedOut("send to", peer_ip_);
      return Status::FromErrno(errno, "send to", peer_ip_);
    }
    data += w;
    n -= static_cast<size_t>(w);
  }
  return Status::OK();
}

Result<size_t> HttpStream::ReadBody(char* buf, size_t max) {
  if (body_done_ || max == 0) return size_t{0};
  if (head_.expect_continue && !continue_sent_ && !head_sent_) {
    continue_sent_ = true;
    static const char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
    DEPOT_RETURN_IF_ERROR(SendAll(kContinue, sizeof kContinue - 1));
  }
  auto fill = [&]() -> Status {
    char tmp[kReadChunk];
    DEPOT_ASSIGN_OR_RETURN(size_t n, RecvSome(tmp, sizeof tmp));
    in_.append(tmp, n);
    return Status::OK();
  };
  if (chunked_) {
    for (;;) {
      if (!decoded_.empty()) {
        size_t n = std::min(max, decoded_.size());
        memcpy(buf, decoded_.data(), n);
        decoded_.erase(0, n);
        return n;
      }
      size_t consumed = 0;
      auto st = chunked_->Feed(in_, &consumed, &decoded_, kReadChunk);
      in_.erase(0, consumed);
      if (st == http::ChunkedDecoder::State::kError) {
        broken_ = true;
        return Status::InvalidArgument("malformed chunked body:", chunked_->error());
      }
      if (st == http::ChunkedDecoder::State::kDone) {
        if (decoded_.empty()) {
          body_done_ = true;
          return size_t{0};
        }
        continue;
      }
      if (decoded_.empty()) DEPOT_RETURN_IF_ERROR(fill());
    }
  }
  if (body_left_ == 0) {
    body_done_ = true;
    return size_t{0};
  }
  size_t want = static_cast<size_t>(std::min<uint64_t>(body_left_, max));
  size_t n = 0;
  if (!in_.empty()) {
    n = std::min(want, in_.size());
    memcpy(buf, in_.data(), n);
    in_.erase(0, n);
  } else {
    DEPOT_ASSIGN_OR_RETURN(n, RecvSome(buf, want));
  }
  body_left_ -= n;
  // Done as soon as the last byte is in: a handler that reads exactly Content-Length bytes
  // (an upload of known size) answers on a connection that stays open.
  if (body_left_ == 0) body_done_ = true;
  return n;
}

Result<size_t> HttpStream::RecvSome(char* buf, size_t n) {
  for (;;) {
    ssize_t r = recv(fd_, buf, n, 0);
    if (r > 0) return static_cast<size_t>(r);
    if (r < 0 && errno == EINTR) continue;
    broken_ = true;
    if (r == 0) return Status::IOError("client closed the connection mid-body:", peer_ip_);
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return Status::TimedOut("client stalled mid-body:", peer_ip_);
    }
    return Status::FromErrno(errno, "recv from", peer_ip_);
  }
}

Status HttpStream::SendHead(int status, const HttpHeaders& headers,
                            std::optional<uint64_t> length) {
  if (head_sent_) return Status::Internal("response head sent twice");
  head_sent_ = true;
  std::string h = StatusLine(status);
  for (const auto& [k, v] : headers) h += k + ": " + v + "\r\n";
  h += "Date: " + CachedDate() + "\r\n";
  if (length) {
    h += "Content-Length: " + std::to_string(*length) + "\r\n";
    out_left_ = is_head_request_ ? 0 : *length;
  } else if (!NoBodyStatus(status)) {
    if (head_.version_minor >= 1) {
      h += "Transfer-Encoding: chunked\r\n";
      chunked_out_ = !is_head_request_;
    } else {
      head_.keep_alive = false;  // the body ends with the connection
    }
  }
  // An answer before the body was read (a refusal) ends the connection: the body is not drained
  // beyond a little, so the client must not send another request on it.
  if (!body_done_) head_.keep_alive = false;
  if (!head_.keep_alive) h += "Connection: close\r\n";
  h += "\r\n";
  return SendAll(h.data(), h.size());
}

Status HttpStream::SendBody(const char* data, size_t n) {
  if (!head_sent_) return Status::Internal("response body before its head");
  if (is_head_request_ || n == 0) return Status::OK();
  if (out_left_) {
    if (n > *out_left_) return Status::Internal("response body longer than its Content-Length");
    *out_left_ -= n;
  }
  if (chunked_out_) {
    char size_line[32];
    int len = snprintf(size_line, sizeof size_line, "%zx\r\n", n);
    DEPOT_RETURN_IF_ERROR(SendAll(size_line, static_cast<size_t>(len)));
    DEPOT_RETURN_IF_ERROR(SendAll(data, n));
    return SendAll("\r\n", 2);
  }
  return SendAll(data, n);
}

Status HttpStream::Send(const HttpResponse& r) {
  DEPOT_RETURN_IF_ERROR(SendHead(r.status, r.headers,
                                 NoBodyStatus(r.status) ? std::nullopt
                                                        : std::optional<uint64_t>(r.body.size())));
  return SendBody(r.body.data(), r.body.size());
}

Status HttpStream::Finish() {
  if (chunked_out_) {
    chunked_out_ = false;
    DEPOT_RETURN_IF_ERROR(SendAll("0\r\n\r\n", 5));
  }
  if (out_left_ && *out_left_ != 0) broken_ = true;
  // Whatever body the handler left unread is read and dropped, a little and briefly (a slow
  // client must not hold the worker), so that the answer is not lost to a reset; a body left
  // after that closes the connection.
  if (!broken_ && !body_done_) {
    SetTimeouts(fd_, 1);
    size_t drained = 0;
    char tmp[16 << 10];
    int64_t until = NowSeconds() + 2;  // a client trickling its body cannot hold the worker
    while (!broken_ && !body_done_ && drained <= kStreamDrainMax && NowSeconds() < until) {
      auto r = ReadBody(tmp, sizeof tmp);
      if (!r.ok()) break;
      drained += *r;
    }
  }
  if (!body_done_) {
    broken_ = true;
    shutdown(fd_, SHUT_WR);  // the answer is out; a FIN, not a reset, ends it
  }
  return Status::OK();
}

// ---- the event-loop side ----

struct HttpServer::Loop {
  HttpServer* server = nullptr;
  EventLoop loop;
  evconnlistener* listener = nullptr;
  std::unordered_set<Conn*> conns;
};
struct HttpServer::Conn {
  enum class St { kHead, kBody, kBusy, kDetached, kClosing, kLinger };
  HttpServer* server = nullptr;
  Loop* loop = nullptr;
  int fd = -1;
  std::string peer;
  event* rev = nullptr;
  event* wev = nullptr;
  St st = St::kHead;
  std::string in;
  std::string out;
  size_t out_off = 0;
  http::RequestHead head;
  RouteMode mode = RouteMode::kInline;
  uint64_t body_left = 0;
  std::unique_ptr<http::ChunkedDecoder> chunked;
  std::string body;
  bool close_after = false;
  bool reading = true;
  bool dead = false;        // closed while a worker had it: freed when the worker is done
  int64_t last_active = 0;  // for the idle timeout of a keep-alive connection
  int64_t deadline = 0;     // a request (or a lingering close) must be done by then (0: none)

  static void OnRead(evutil_socket_t, short, void* arg) {
    auto* c = static_cast<Conn*>(arg);
    c->server->OnReadable(c);
  }
  static void OnWrite(evutil_socket_t, short, void* arg) {
    auto* c = static_cast<Conn*>(arg);
    c->server->OnWritable(c);
  }
  void PauseReading() {
    if (reading) event_del(rev);
    reading = false;
  }
  void ResumeReading() {
    if (!reading) event_add(rev, nullptr);
    reading = true;
  }
};

HttpServer::HttpServer(HttpServerOptions options, Classifier classify, Handler handler,
                       StreamHandler stream, ErrorBody error_body)
    : opt_(std::move(options)),
      classify_(std::move(classify)),
      handler_(std::move(handler)),
      stream_(std::move(stream)),
      error_body_(std::move(error_body)) {}

HttpServer::~HttpServer() { Stop(); }

Status HttpServer::Start() {
  InitLibevent();
  DEPOT_ASSIGN_OR_RETURN(listen_fd_, ListenTcp(opt_.bind_addr, opt_.port, &port_));

  started_ = true;  // from here on, Stop() undoes whatever part of the start succeeded
  for (int i = 0; i < std::max(1, opt_.worker_threads); ++i) {
    workers_.emplace_back([this] { WorkerMain(); });
  }
  for (int i = 0; i < std::max(1, opt_.loop_threads); ++i) {
    auto loop = std::make_unique<Loop>();
    int fd = dup(listen_fd_);
    if (fd < 0) return Status::FromErrno(errno, "dup listening socket");
    Loop* lp = loop.get();
    loop->server = this;
    loop->listener = evconnlistener_new(
        loop->loop.base(),
        [](evconnlistener*, evutil_socket_t cfd, sockaddr* sa, int, void* arg) {
          auto* l = static_cast<Loop*>(arg);
          char ip[INET_ADDRSTRLEN] = "?";
          if (sa->sa_family == AF_INET) {
            inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(sa)->sin_addr, ip, sizeof ip);
          }
          l->server->Accept(l, cfd, ip);
        },
        lp, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
    if (loop->listener == nullptr) {
      close(fd);
      return Status::Internal("evconnlistener_new failed");
    }
    loop->loop.RunEvery(1000, [this, lp] { Sweep(lp); });
    loop->loop.Start();
    loops_.push_back(std::move(loop));
  }
  return Status::OK();
}


void HttpServer::Stop() {
  if (!started_ || stopping_.exchange(true)) return;
  // Wake workers blocked on a streaming client: shut every connection down on its loop.
  for (auto& l : loops_) {
    std::promise<void> done;
    Loop* lp = l.get();
    lp->loop.Post([lp, &done] {
      if (lp->listener) evconnlistener_disable(lp->listener);
      for (Conn* c : lp->conns) shutdown(c->fd, SHUT_RDWR);
      done.set_value();
    });
    done.get_future().wait();
  }
  // Workers first: a worker may be posting its answer to a loop, which must still run.
  {
    std::lock_guard<std::mutex> l(mu_);
    workers_stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
  for (auto& l : loops_) {
    l->loop.Stop();
    l->loop.Join();
  }
  for (auto& l : loops_) {
    for (Conn* c : l->conns) {
      if (c->rev) event_free(c->rev);
      if (c->wev) event_free(c->wev);
      if (c->fd >= 0) close(c->fd);
      delete c;
    }
    l->conns.clear();
    if (l->listener) evconnlistener_free(l->listener);
    l->listener = nullptr;
  }
  loops_.clear();
  if (listen_fd_ >= 0) close(listen_fd_);
  listen_fd_ = -1;
}

void HttpServer::Accept(Loop* loop, int fd, const std::string& peer) {
  if (stopping_ || connections_.load() >= opt_.max_connections) {
    close(fd);
    return;
  }
  SetBlocking(fd, false);
  auto* c = new Conn;
  c->server = this;
  c->loop = loop;
  c->fd = fd;
  c->peer = peer;
  c->last_active = NowSeconds();
  c->rev = event_new(loop->loop.base(), fd, EV_READ | EV_PERSIST, &Conn::OnRead, c);
  c->wev = event_new(loop->loop.base(), fd, EV_WRITE, &Conn::OnWrite, c);
  event_add(c->rev, nullptr);
  loop->conns.insert(c);
  ++connections_;
}

void HttpServer::Close(Conn* c) {
  if (c->st == Conn::St::kBusy || c->st == Conn::St::kDetached) {
    // A worker still has it (and will post back): stop its events, free it then.
    c->dead = true;
    c->PauseReading();
    event_del(c->wev);
    return;
  }
  FreeConn(c);
}

void HttpServer::FreeConn(Conn* c) {
  c->loop->conns.erase(c);
  event_free(c->rev);
  event_free(c->wev);
  close(c->fd);
  delete c;
  --connections_;
}

void HttpServer::OnReadable(Conn* c) {
  char buf[kReadChunk];
  c->last_active = NowSeconds();
  for (int rounds = 0; rounds < 4; ++rounds) {
    ssize_t r = recv(c->fd, buf, sizeof buf, 0);
    if (r > 0) {
      if (c->st == Conn::St::kLinger || c->st == Conn::St::kClosing) continue;  // dropped
      c->in.append(buf, static_cast<size_t>(r));
      if (static_cast<size_t>(r) < sizeof buf) break;
      continue;
    }
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (r < 0 && errno == EINTR) continue;
    // The client is gone (or half-closed): nothing more can arrive.
    if (c->st == Conn::St::kClosing) {
      c->PauseReading();
      return;  // the error answer is still flushing; Close follows it
    }
    Close(c);
    return;
  }
  if (c->st == Conn::St::kHead || c->st == Conn::St::kBody) Process(c);
}

void HttpServer::OnWritable(Conn* c) {
  c->last_active = NowSeconds();
  if (!FlushOut(c)) return;
  if (c->st == Conn::St::kHead || c->st == Conn::St::kBody) {
    c->ResumeReading();
    Process(c);
  }
}

bool HttpServer::FlushOut(Conn* c) {
  while (c->out_off < c->out.size()) {
    ssize_t w = send(c->fd, c->out.data() + c->out_off, c->out.size() - c->out_off, MSG_NOSIGNAL);
    if (w > 0) {
      c->out_off += static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      event_add(c->wev, nullptr);
      return true;
    }
    Close(c);
    return false;
  }
  c->out.clear();
  c->out_off = 0;
  if (c->st == Conn::St::kClosing) {
    // Lingering close: stop sending, read and drop what the client still sends for a moment, so
    // that the error answer is not lost to a reset.
    shutdown(c->fd, SHUT_WR);
    c->st = Conn::St::kLinger;
    c->deadline = NowSeconds() + kLingerSeconds;
    c->ResumeReading();
  }
  return true;
}

void HttpServer::QueueResponse(Conn* c, const HttpResponse& r, bool head_only) {
  std::string& o = c->out;
  if (c->out_off > 0 && c->out_off == o.size()) {
    o.clear();
    c->out_off = 0;
  }
  o += StatusLine(r.status);
  for (const auto& [k, v] : r.headers) {
    o += k;
    o += ": ";
    o += v;
    o += "\r\n";
  }
  o += "Date: ";
  o += CachedDate();
  o += "\r\n";
  if (!NoBodyStatus(r.status)) {
    o += "Content-Length: ";
    o += std::to_string(r.body.size());
    o += "\r\n";
  }
  if (c->close_after) {
    o += "Connection: close\r\n";
  } else if (c->head.version_minor == 0) {
    o += "Connection: keep-alive\r\n";
  }
  o += "\r\n";
  if (!head_only && !NoBodyStatus(r.status)) o += r.body;
}

void HttpServer::Fail(Conn* c, int status, const std::string& message) {
  HttpResponse r;
  auto [type, text] = error_body_ ? error_body_(status, message)
                                  : std::make_pair(std::string("text/plain"), message + "\n");
  r.Set(status, type, text);
  FailWith(c, r);
}

void HttpServer::FailWith(Conn* c, const HttpResponse& r) {
  c->close_after = true;
  QueueResponse(c, r, c->head.method == "HEAD");
  c->st = Conn::St::kClosing;
  c->deadline = NowSeconds() + opt_.io_timeout;
  c->in.clear();
  static_cast<void>(FlushOut(c));
}

void HttpServer::Process(Conn* c) {
  while (c->st == Conn::St::kHead || c->st == Conn::St::kBody) {
    if (c->out.size() - c->out_off > kOutHighWater) {
      c->PauseReading();  // the client reads slower than it sends: wait for the flush
      return;
    }
    if (c->st == Conn::St::kHead) {
      if (c->in.empty()) return;
      // The clock of a request starts with its first byte; reads do not reset it.
      if (c->deadline == 0) c->deadline = NowSeconds() + opt_.io_timeout;
      c->head = http::RequestHead();
      http::HeadResult hr = http::ParseRequestHead(c->in, opt_.max_head, &c->head);
      if (hr.kind == http::HeadResult::Kind::kNeedMore) return;
      if (hr.kind == http::HeadResult::Kind::kError) {
        Fail(c, hr.status, hr.message);
        return;
      }
      c->in.erase(0, hr.consumed);
      c->close_after = !c->head.keep_alive;
      HttpResponse reject;
      c->mode = classify_(c->head, c->peer, &reject);
      if (c->mode == RouteMode::kReject) {
        FailWith(c, reject);
        return;
      }
      if (c->mode == RouteMode::kStream) {
        static_cast<void>(Dispatch(c));
        return;
      }
      c->body.clear();
      c->chunked.reset();
      c->body_left = 0;
      if (c->head.chunked) {
        c->chunked = std::make_unique<http::ChunkedDecoder>();
      } else {
        c->body_left = c->head.content_length.value_or(0);
        if (c->body_left > opt_.max_body) {
          Fail(c, 413, "request body larger than " + std::to_string(opt_.max_body) + " bytes");
          return;
        }
      }
      if (c->head.expect_continue && (c->chunked || c->body_left > 0)) {
        c->out += "HTTP/1.1 100 Continue\r\n\r\n";
      }
      c->st = Conn::St::kBody;
    }
    // kBody
    if (c->chunked) {
      size_t consumed = 0;
      auto st = c->chunked->Feed(c->in, &consumed, &c->body, opt_.max_body + 1 - c->body.size());
      c->in.erase(0, consumed);
      if (c->body.size() > opt_.max_body) {
        Fail(c, 413, "request body larger than " + std::to_string(opt_.max_body) + " bytes");
        return;
      }
      if (st == http::ChunkedDecoder::State::kError) {
        Fail(c, 400, "malformed chunked body: " + c->chunked->error());
        return;
      }
      if (st == http::ChunkedDecoder::State::kMore) {
        if (!c->out.empty()) static_cast<void>(FlushOut(c));  // a 100 Continue
        return;
      }
    } else {
      size_t n = static_cast<size_t>(std::min<uint64_t>(c->body_left, c->in.size()));
      c->body.append(c->in, 0, n);
      c->in.erase(0, n);
      c->body_left -= n;
      if (c->body_left > 0) {
        if (!c->out.empty()) static_cast<void>(FlushOut(c));  // a 100 Continue
        return;
      }
    }
    if (!Dispatch(c)) return;
  }
}

bool HttpServer::Dispatch(Conn* c) {
  bool head_only = c->head.method == "HEAD";
  c->deadline = 0;  // the request is in; the next one starts its own clock
  if (c->mode == RouteMode::kInline) {
    HttpRequest req{std::move(c->head), std::move(c->body), c->peer};
    HttpResponse resp;
    handler_(req, &resp);
    c->head = std::move(req.head);
    QueueResponse(c, resp, head_only);
    c->st = Conn::St::kHead;
    if (c->close_after) c->st = Conn::St::kClosing;
    return FlushOut(c);
  }
  if (c->mode == RouteMode::kWorker) {
    c->st = Conn::St::kBusy;
    c->PauseReading();
    auto req = std::make_shared<HttpRequest>(HttpRequest{c->head, std::move(c->body), c->peer});
    bool ok = Submit([this, c, req, head_only] {
      auto resp = std::make_shared<HttpResponse>();
      handler_(*req, resp.get());
      c->loop->loop.Post([this, c, resp, head_only] {
        if (c->dead) return FreeConn(c);
        QueueResponse(c, *resp, head_only);
        c->st = Conn::St::kHead;
        Resume(c);
      });
    });
    if (!ok) {
      c->st = Conn::St::kBody;
      Fail(c, 503, "server busy");
    }
    return false;
  }
  // kStream: the worker owns the socket until the exchange is over.
  c->st = Conn::St::kDetached;
  c->PauseReading();
  event_del(c->wev);
  auto s = std::make_shared<HttpStream>();
  s->fd_ = c->fd;
  s->head_ = std::move(c->head);
  s->peer_ip_ = c->peer;
  s->in_ = std::move(c->in);
  c->in.clear();
  s->is_head_request_ = head_only;
  if (s->head_.chunked) {
    s->chunked_ = std::make_unique<http::ChunkedDecoder>();
  } else {
    s->body_left_ = s->head_.content_length.value_or(0);
    s->body_done_ = s->body_left_ == 0;  // nothing to read (a GET)
  }
  std::string pending = c->out.substr(c->out_off);
  c->out.clear();
  c->out_off = 0;
  bool ok = Submit([this, c, s, pending] {
    SetBlocking(s->fd_, true);
    SetTimeouts(s->fd_, opt_.io_timeout);
    Status sent = s->SendAll(pending.data(), pending.size());
    if (sent.ok()) {
      stream_(*s);
      if (!s->head_sent() && !s->broken_) {
        auto [type, text] = error_body_ ? error_body_(500, "handler sent no response")
                                        : std::make_pair(std::string("text/plain"),
                                                         std::string("no response\n"));
        HttpResponse r;
        r.Set(500, type, text);
        static_cast<void>(s->Send(r));
      }
      static_cast<void>(s->Finish());
    }
    SetBlocking(s->fd_, false);
    bool keep = sent.ok() && !s->broken_ && s->head_.keep_alive;
    c->loop->loop.Post([this, c, s, keep] {
      if (c->dead) {
        c->st = Conn::St::kHead;
        FreeConn(c);
        return;
      }
      if (!keep) {
        // A lingering close on the loop: what the client still sends is read and dropped for a
        // moment, so that closing with unread bytes does not reset the answer away.
        c->st = Conn::St::kLinger;
        c->deadline = NowSeconds() + kLingerSeconds;
        shutdown(c->fd, SHUT_WR);
        c->ResumeReading();
        return;
      }
      c->in = std::move(s->in_);
      c->head = std::move(s->head_);
      c->st = Conn::St::kHead;
      Resume(c);
    });
  });
  if (!ok) {
    c->in = std::move(s->in_);
    c->head = std::move(s->head_);
    c->out = pending;
    c->st = Conn::St::kBody;
    Fail(c, 503, "server busy");
  }
  return false;
}

void HttpServer::Resume(Conn* c) {
  c->last_active = NowSeconds();
  if (c->close_after && c->st == Conn::St::kHead) c->st = Conn::St::kClosing;
  c->ResumeReading();
  if (FlushOut(c) && c->st == Conn::St::kHead) Process(c);
}

void HttpServer::Sweep(Loop* loop) {
  int64_t now = NowSeconds();
  std::vector<Conn*> dead;
  for (Conn* c : loop->conns) {
    switch (c->st) {
      case Conn::St::kHead: {
        bool idle = c->in.empty() && c->out_off == c->out.size();
        // Idle: the keep-alive timeout. An answer the client does not read: the I/O timeout
        // since the last progress. A request coming in: its own deadline.
        if ((c->deadline != 0 && now > c->deadline) ||
            (idle && now - c->last_active > opt_.idle_timeout) ||
            (!idle && c->deadline == 0 && now - c->last_active > opt_.io_timeout)) {
          dead.push_back(c);
        }
        break;
      }
      case Conn::St::kBody:
      case Conn::St::kClosing:
      case Conn::St::kLinger:
        // An answer the client does not read keeps a closing connection without a deadline:
        // the I/O timeout since the last progress ends it.
        if (c->deadline != 0 ? now > c->deadline : now - c->last_active > opt_.io_timeout) {
          dead.push_back(c);
        }
        break;
      case Conn::St::kBusy:
      case Conn::St::kDetached:
        break;
    }
  }
  for (Conn* c : dead) Close(c);
}

bool HttpServer::Submit(std::function<void()> job) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (workers_stop_ || jobs_.size() >= opt_.max_queue) return false;
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
  return true;
}

void HttpServer::WorkerMain() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [this] { return workers_stop_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

}  // namespace depot::net
