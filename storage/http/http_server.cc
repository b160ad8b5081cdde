#include "storage/http/http_server.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include <prometheus/counter.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "common/base/conf.h"
#include "common/base/hash.h"
#include "common/base/logging.h"
#include "common/net/blocking_conn.h"
#include "common/net/http_server.h"
#include "common/proto/file_id.h"
#include "storage/replicator.h"
#include "storage/storage_server.h"

namespace depot::storage {

struct HttpServer::Loop {
  event_base* base = nullptr;
  evhttp* http = nullptr;
  std::thread thread;
};

// A request for a file this member does not have, while the tracker is asked where it is.
struct HttpServer::Miss {
  HttpServer* self = nullptr;
  evhttp_request* req = nullptr;
  event_base* base = nullptr;  // the loop of the request
  http::Target target;
  bool head = false;
  // The answer: a member that has the file (its advertised HTTP address); empty when none.
  std::string ip;
  int http_port = 0;
  bool answered = false;  // some tracker answered (else: 503, the trackers cannot be asked)
  bool no_address = false;  // other members hold it, but their HTTP address is not known yet
  bool expired = false;     // waited too long in the queue: not asked (503)
  int64_t queued_ns = 0;
};

namespace {

// Bodies up to this size are read into memory and sent with the headers; larger ones go out
// with sendfile.
constexpr uint64_t kInlineBody = 32 * 1024;
// A miss that waited this long for the resolver thread is answered 503 without asking.
constexpr int64_t kMissDeadlineNs = 5'000'000'000LL;

constexpr const char* kBuiltinMime =
    "text/plain txt\nimage/jpeg jpg jpeg\nimage/png png\nimage/gif gif\nvideo/mp4 mp4\n"
    "application/json json\ntext/html html htm\n";

std::string ExtensionOf(const std::string& name) {
  size_t dot = name.rfind('.');
  return dot == std::string::npos ? std::string() : name.substr(dot + 1);
}

}  // namespace

HttpServer::HttpServer(StorageServer* server, HttpOptions options, prometheus::Registry* registry)
    : server_(server), opt_(std::move(options)), registry_(registry) {}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Finish(evhttp_request* req, int code, const char* reason, std::string_view text) {
  evkeyvalq* out = evhttp_request_get_output_headers(req);
  evhttp_add_header(out, "Content-Type", "text/plain; charset=utf-8");
  evbuffer* buf = evbuffer_new();
  // A HEAD answer has no body (evhttp would send one, and break the framing of a keep-alive
  // connection).
  bool head = evhttp_request_get_command(req) == EVHTTP_REQ_HEAD;
  if (!text.empty() && !head) evbuffer_add(buf, text.data(), text.size());
  evhttp_send_reply(req, code, reason, buf);
  evbuffer_free(buf);
  CountReply(code);
}

void HttpServer::CountReply(int code) {
  auto it = replies_.find(code);
  if (it == replies_.end()) it = replies_.find(0);
  if (it != replies_.end()) it->second->Increment();
}

Status HttpServer::Start() {
  cache_control_ = "public, max-age=" + std::to_string(opt_.cache_max_age) + ", immutable";
  if (opt_.mime_types.empty()) {
    mime_ = http::MimeTable::Parse(kBuiltinMime);
  } else {
    DEPOT_ASSIGN_OR_RETURN(mime_, http::MimeTable::Load(opt_.mime_types));
  }
  if (registry_ != nullptr) {
    auto& fam = prometheus::BuildCounter()
                    .Name("depot_http_responses_total")
                    .Help("HTTP responses of storaged, by status code (other: any code not listed)")
                    .Register(*registry_);
    for (int code : {200, 206, 302, 304, 400, 403, 404, 405, 416, 500, 502, 503}) {
      replies_[code] = &fam.Add({{"code", std::to_string(code)}});
    }
    replies_[0] = &fam.Add({{"code", "other"}});
    auto& miss = prometheus::BuildCounter()
                     .Name("depot_http_misses_total")
                     .Help("HTTP reads of files not on this member, by outcome")
                     .Register(*registry_);
    for (const char* o : {"redirected", "proxied", "not_found", "tracker_error", "overloaded"}) {
      miss_outcomes_[o] = &miss.Add({{"outcome", o}});
    }
  }
  evthread_use_pthreads();
  DEPOT_ASSIGN_OR_RETURN(listen_fd_, net::ListenTcp(opt_.bind_addr, opt_.port, &port_));
  for (int i = 0; i < std::max(1, opt_.threads); ++i) {
    auto loop = std::make_unique<Loop>();
    loop->base = event_base_new();
    loop->http = loop->base ? evhttp_new(loop->base) : nullptr;
    if (loop->http == nullptr) {
      if (loop->base) event_base_free(loop->base);
      return Status::Internal("evhttp_new failed");
    }
    // Every common method reaches Handle(), which answers 405 with Allow for all but GET and
    // HEAD (evhttp itself would answer 501 Not Implemented).
    evhttp_set_allowed_methods(loop->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                               EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                               EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_max_headers_size(loop->http, 256 * 1024);  // room for a long Range list (then 416)
    evhttp_set_max_body_size(loop->http, 4096);  // reads carry no body; others are refused
    evhttp_set_timeout(loop->http, 60);
    evhttp_set_default_content_type(loop->http, "application/octet-stream");
    evhttp_set_gencb(loop->http, &HttpServer::OnRequest, this);
    // Each loop's listener owns (and closes when freed) its own descriptor of the socket.
    int fd = dup(listen_fd_);
    if (fd < 0 || evhttp_accept_socket(loop->http, fd) != 0) {
      if (fd >= 0) close(fd);
      evhttp_free(loop->http);
      event_base_free(loop->base);
      return Status::Internal("evhttp_accept_socket failed");
    }
    event_base* base = loop->base;
    loop->thread = std::thread([base] { event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY); });
    loops_.push_back(std::move(loop));
  }
  if (opt_.miss != "off") resolver_ = std::thread([this] { ResolverLoop(); });
  DEPOT_LOG_INFO("http reads on {}:{} ({} threads, token {}, a file not here: {})",
                 opt_.bind_addr, port_, loops_.size(), opt_.token ? "required" : "off", opt_.miss);
  return Status::OK();
}

void HttpServer::Stop() {
  {
    std::lock_guard<std::mutex> l(miss_mu_);
    miss_stop_ = true;
  }
  miss_cv_.notify_all();
  if (resolver_.joinable()) resolver_.join();
  {
    std::lock_guard<std::mutex> l(miss_mu_);
    misses_.clear();  // their requests are freed with the connections below
  }
  for (auto& l : loops_) {
    if (l->base) event_base_loopbreak(l->base);
  }
  for (auto& l : loops_) {
    if (l->thread.joinable()) l->thread.join();
    if (l->http) evhttp_free(l->http);
    if (l->base) event_base_free(l->base);
  }
  loops_.clear();
  if (listen_fd_ >= 0) close(listen_fd_);
  listen_fd_ = -1;
}

void HttpServer::OnRequest(evhttp_request* req, void* arg) {
  static_cast<HttpServer*>(arg)->Handle(req);
}

void HttpServer::Handle(evhttp_request* req) {
  const char* raw = evhttp_request_get_uri(req);
  std::string_view uri = raw == nullptr ? std::string_view() : std::string_view(raw);
  evhttp_cmd_type cmd = evhttp_request_get_command(req);
  bool head = cmd == EVHTTP_REQ_HEAD;
  if (cmd != EVHTTP_REQ_GET && !head) {
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
    return Finish(req, 405, "Method Not Allowed", "only GET and HEAD\n");
  }
  if (uri == "/healthz") return Finish(req, 200, "OK", "ok\n");
  if (uri == "/metrics" && registry_ != nullptr) {
    std::string text = prometheus::TextSerializer().Serialize(registry_->Collect());
    evkeyvalq* out = evhttp_request_get_output_headers(req);
    evhttp_add_header(out, "Content-Type", "text/plain; version=0.0.4");
    evbuffer* buf = evbuffer_new();
    evbuffer_add(buf, text.data(), text.size());
    evhttp_send_reply(req, 200, "OK", buf);
    evbuffer_free(buf);
    CountReply(200);
    return;
  }
  auto t = http::ParseTarget(uri, server_->config().group_name);
  if (!t.ok()) {
    if (t.status().IsNotFound()) return Finish(req, 404, "Not Found", "not found\n");
    return Finish(req, 400, "Bad Request", "bad request: not a file ID\n");
  }
  if (opt_.token) {
    Status s = http::CheckToken(*t, opt_.secret, opt_.token_ttl, UnixSeconds());
    if (!s.ok()) return Finish(req, 403, "Forbidden", "forbidden: " + s.message() + "\n");
  }
  ServeFile(req, *t, head);
}

void HttpServer::ServeFile(evhttp_request* req, const http::Target& t, bool head) {
  auto path = server_->PathForFile(t.id);
  if (!path.ok()) return Finish(req, 400, "Bad Request", "bad request: store path\n");
  auto opened = StorageServer::OpenFile(*path, t.id);
  if (!opened.ok() && opened.status().code() != StatusCode::kNotFound) {
    DEPOT_LOG_WARN("http: open {}: {}", t.id.RemoteName(), opened.status().ToString());
    return Finish(req, 500, "Internal Server Error", "cannot open the file\n");
  }
  if (!opened.ok()) {
    // Not here (not synced yet, or lost): a member that has it may, unless the client was sent
    // here by another member already.
    if (opt_.miss != "off" && !t.hop) return QueueMiss(req, t, head);
    return Finish(req, 404, "Not Found", "not found\n");
  }
  int fd = opened->fd;
  uint64_t size = opened->size;
  // Where the content starts in fd: 0, or past the slot header in a trunk file.
  uint64_t base = opened->offset;
  // A file segment of the content that closes fd and releases the trunk slot's pin once the
  // reply is sent (or dropped). nullptr when libevent cannot make one (fd is closed then).
  auto segment = [&]() -> evbuffer_file_segment* {
    evbuffer_file_segment* seg = evbuffer_file_segment_new(
        fd, static_cast<ev_off_t>(base), static_cast<ev_off_t>(size), EVBUF_FS_CLOSE_ON_FREE);
    if (seg == nullptr) {
      close(fd);
      return nullptr;
    }
    if (opened->pin) {
      evbuffer_file_segment_add_cleanup_cb(
          seg,
          [](evbuffer_file_segment const*, int, void* arg) {
            delete static_cast<std::shared_ptr<void>*>(arg);
          },
          new std::shared_ptr<void>(opened->pin));
    }
    return seg;
  };
  evkeyvalq* in = evhttp_request_get_input_headers(req);
  evkeyvalq* out = evhttp_request_get_output_headers(req);
  // A stored file's mtime is the creation time in its file ID (StorePath::Publish), the same on
  // every member; the tags are nginx's, so storaged and nginx agree.
  int64_t modified = opened->mtime;
  std::string etag = http::ETagFor(modified, size);
  // The validators and cache headers go on the 200, 206 and 304 answers only: an error (416,
  // 500) must not be cached for a year.
  auto add_file_headers = [&] {
    evhttp_add_header(out, "ETag", etag.c_str());
    evhttp_add_header(out, "Last-Modified", http::HttpDate(modified).c_str());
    evhttp_add_header(out, "Cache-Control", cache_control_.c_str());
    evhttp_add_header(out, "Accept-Ranges", "bytes");
    if (!t.filename.empty()) {
      evhttp_add_header(out, "Content-Disposition", http::ContentDisposition(t.filename).c_str());
    }
  };
  const std::string& type = mime_.TypeFor(ExtensionOf(t.id.name));
  // Conditional requests: the content of a file ID never changes.
  const char* inm = evhttp_find_header(in, "If-None-Match");
  const char* ims = evhttp_find_header(in, "If-Modified-Since");
  bool not_modified = false;
  if (inm != nullptr) {
    not_modified = http::IfNoneMatchHits(inm, etag);
  } else if (ims != nullptr) {
    auto since = http::ParseHttpDate(ims);
    not_modified = since && modified <= *since;
  }
  if (not_modified) {
    close(fd);
    add_file_headers();
    evhttp_send_reply(req, 304, "Not Modified", nullptr);
    CountReply(304);
    return;
  }
  const char* range = evhttp_find_header(in, "Range");
  std::vector<http::ByteRange> ranges;
  if (range != nullptr) {
    auto r = http::ParseRange(range, size, opt_.max_ranges);
    if (!r.ok()) {
      close(fd);
      std::string cr = "bytes */" + std::to_string(size);
      evhttp_add_header(out, "Content-Range", cr.c_str());
      return Finish(req, 416, "Range Not Satisfiable");
    }
    ranges = std::move(*r);
  }
  add_file_headers();
  evbuffer* body = evbuffer_new();
  int code = 200;
  const char* reason = "OK";
  if (ranges.empty()) {
    evhttp_add_header(out, "Content-Type", type.c_str());
    if (head || size == 0) {
      close(fd);
    } else if (size <= kInlineBody) {
      // A small file is read into the reply, so headers and body leave in one write.
      evbuffer_iovec vec;
      ssize_t n = -1;
      if (evbuffer_reserve_space(body, static_cast<ev_ssize_t>(size), &vec, 1) == 1) {
        n = pread(fd, vec.iov_base, size, static_cast<off_t>(base));
        if (n == static_cast<ssize_t>(size)) {
          vec.iov_len = size;
          evbuffer_commit_space(body, &vec, 1);
        }
      }
      close(fd);
      if (n != static_cast<ssize_t>(size)) {
        evbuffer_free(body);
        evhttp_clear_headers(out);
        return Finish(req, 500, "Internal Server Error", "read error\n");
      }
    } else {
      evbuffer_file_segment* seg = segment();
      if (seg == nullptr) {
        evbuffer_free(body);
        evhttp_clear_headers(out);
        return Finish(req, 500, "Internal Server Error");
      }
      evbuffer_add_file_segment(body, seg, 0, static_cast<ev_off_t>(size));
      evbuffer_file_segment_free(seg);
    }
    if (head) evhttp_add_header(out, "Content-Length", std::to_string(size).c_str());
  } else if (ranges.size() == 1) {
    code = 206;
    reason = "Partial Content";
    const auto& r = ranges[0];
    evhttp_add_header(out, "Content-Type", type.c_str());
    std::string cr = "bytes " + std::to_string(r.first) + "-" + std::to_string(r.last) + "/" +
                     std::to_string(size);
    evhttp_add_header(out, "Content-Range", cr.c_str());
    if (head) {
      close(fd);
      evhttp_add_header(out, "Content-Length", std::to_string(r.size()).c_str());
    } else {
      evbuffer_file_segment* seg = segment();
      if (seg == nullptr) {
        evbuffer_free(body);
        evhttp_clear_headers(out);
        return Finish(req, 500, "Internal Server Error");
      }
      evbuffer_add_file_segment(body, seg, static_cast<ev_off_t>(r.first),
                                static_cast<ev_off_t>(r.size()));
      evbuffer_file_segment_free(seg);
    }
  } else {
    code = 206;
    reason = "Partial Content";
    std::string boundary = HexEncode(SecureRandomBytes(12));
    std::string ctype = "multipart/byteranges; boundary=" + boundary;
    evhttp_add_header(out, "Content-Type", ctype.c_str());
    evbuffer_file_segment* seg = segment();
    if (seg == nullptr) {
      evbuffer_free(body);
      evhttp_clear_headers(out);
      return Finish(req, 500, "Internal Server Error");
    }
    uint64_t total = 0;
    for (const auto& r : ranges) {
      std::string part = "\r\n--" + boundary + "\r\nContent-Type: " + type +
                         "\r\nContent-Range: bytes " + std::to_string(r.first) + "-" +
                         std::to_string(r.last) + "/" + std::to_string(size) + "\r\n\r\n";
      total += part.size() + r.size();
      if (!head) {
        evbuffer_add(body, part.data(), part.size());
        evbuffer_add_file_segment(body, seg, static_cast<ev_off_t>(r.first),
                                  static_cast<ev_off_t>(r.size()));
      }
    }
    std::string end = "\r\n--" + boundary + "--\r\n";
    total += end.size();
    if (!head) evbuffer_add(body, end.data(), end.size());
    evbuffer_file_segment_free(seg);
    if (head) evhttp_add_header(out, "Content-Length", std::to_string(total).c_str());
  }
  evhttp_send_reply(req, code, reason, body);
  evbuffer_free(body);
  CountReply(code);
}

// ---- files not on this member -------------------------------------------------------------

void HttpServer::QueueMiss(evhttp_request* req, const http::Target& t, bool head) {
  auto m = std::make_unique<Miss>();
  m->self = this;
  m->req = req;
  m->base = evhttp_connection_get_base(evhttp_request_get_connection(req));
  m->target = t;
  m->head = head;
  m->queued_ns = MonotonicNanos();
  {
    std::lock_guard<std::mutex> l(miss_mu_);
    if (misses_.size() < opt_.max_pending_misses && !miss_stop_) {
      misses_.push_back(std::move(m));
      miss_cv_.notify_one();
      return;
    }
  }
  if (auto it = miss_outcomes_.find("overloaded"); it != miss_outcomes_.end()) it->second->Increment();
  evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
  Finish(req, 503, "Service Unavailable", "busy: too many reads of files not on this member\n");
}

void HttpServer::ResolverLoop() {
  for (;;) {
    std::unique_ptr<Miss> m;
    {
      std::unique_lock<std::mutex> l(miss_mu_);
      miss_cv_.wait(l, [this] { return miss_stop_ || !misses_.empty(); });
      if (miss_stop_) return;
      m = std::move(misses_.front());
      misses_.pop_front();
    }
    // Behind slow trackers the queue can grow: a miss that waited longer than a client would is
    // answered 503 at once instead of adding to the delay.
    if (MonotonicNanos() - m->queued_ns > kMissDeadlineNs) {
      m->expired = true;
    } else {
      Locate(m.get());
    }
    event_base* base = m->base;
    timeval now{0, 0};
    Miss* raw = m.release();
    if (event_base_once(base, -1, EV_TIMEOUT, &HttpServer::OnLocated, raw, &now) != 0) {
      delete raw;  // the loop is going away; its connections (and the request) go with it
    }
  }
}

// Asks the trackers (QUERY_FETCH_ALL, 105) which members hold the file, and picks the first one
// that is not this member and whose HTTP address is known. Every tracker is asked in turn until
// one answers: one that has just restarted may not know the file's source yet.
void HttpServer::Locate(Miss* m) {
  const StorageConfig& cfg = server_->config();
  std::string body;
  proto::AppendFixed(&body, m->target.id.group, proto::kGroupNameLen);
  body += m->target.id.RemoteName();
  std::string self_ip = proto::IpToString(server_->source_ip());
  for (const auto& t : cfg.tracker_servers) {
    std::string host;
    int port = 0;
    if (!ParseHostPort(t, &host, &port).ok()) continue;
    auto conn = net::BlockingConn::Connect(host, port, 1000);
    if (!conn.ok()) continue;
    (*conn)->set_timeout_ms(2000);
    auto r = (*conn)->Call(proto::kTrackerQueryFetchAll, body, 64 * 1024);
    if (!r.ok()) continue;
    m->answered = true;
    if (r->status != 0) continue;  // ENOENT: another tracker may know the source
    auto holders = proto::DecodeFetchAll(r->body);
    if (!holders.ok()) continue;
    for (const auto& [ip, sport] : *holders) {
      if (ip == self_ip && sport == server_->port()) continue;
      int http_port = server_->replicator().PeerHttpPort(ip, sport);
      if (http_port <= 0) {
        m->no_address = true;  // e.g. just after this member started: its peer list is empty
        continue;
      }
      m->ip = ip;
      m->http_port = http_port;
      return;
    }
    return;  // this tracker knows where the file is: no member but this one has it
  }
}

namespace {

// Proxy mode: one upstream GET/HEAD to the member that has the file, streamed to the client with
// back-pressure (the upstream read pauses while more than kProxyHighWater bytes wait to go out).
constexpr size_t kProxyHighWater = 4 << 20;

struct Proxy {
  evhttp_request* down = nullptr;  // the client's request
  evhttp_connection* up_conn = nullptr;
  event_base* base = nullptr;
  bool started = false;
  std::function<void(int)> count;  // a response code went out
  std::function<void()> done;      // the proxy is finished (active count)
};

bool DownAlive(Proxy* p) { return evhttp_request_get_connection(p->down) != nullptr; }

void ResumeUpstream(Proxy* p) {
  if (p->up_conn != nullptr) {
    bufferevent_enable(evhttp_connection_get_bufferevent(p->up_conn), EV_READ);
  }
}

void OnDownDrained(evhttp_connection*, void* arg) { ResumeUpstream(static_cast<Proxy*>(arg)); }

// The client's connection closed (a reset, a stall past the timeout): a paused upstream read
// must resume, or nothing would ever finish this proxy; later chunks are discarded.
void OnDownClosed(evhttp_connection*, void* arg) { ResumeUpstream(static_cast<Proxy*>(arg)); }

void FreeUpstream(evutil_socket_t, short, void* arg) {
  evhttp_connection_free(static_cast<evhttp_connection*>(arg));
}

int OnProxyHeaders(evhttp_request* up, void* arg) {
  auto* p = static_cast<Proxy*>(arg);
  int code = evhttp_request_get_response_code(up);
  evkeyvalq* in = evhttp_request_get_input_headers(up);
  evkeyvalq* out = evhttp_request_get_output_headers(p->down);
  for (const char* h : {"Content-Type", "Content-Length", "Content-Range", "ETag", "Last-Modified",
                        "Cache-Control", "Accept-Ranges", "Content-Disposition", "Location"}) {
    if (const char* v = evhttp_find_header(in, h)) evhttp_add_header(out, h, v);
  }
  // The reason phrase is libevent's own for the code, not the peer's text.
  if (DownAlive(p)) evhttp_send_reply_start(p->down, code, nullptr);
  p->started = true;
  if (p->count) p->count(code);
  return 0;
}

void OnProxyChunk(evhttp_request* up, void* arg) {
  auto* p = static_cast<Proxy*>(arg);
  evbuffer* in = evhttp_request_get_input_buffer(up);
  if (!p->started || !DownAlive(p)) {
    evbuffer_drain(in, evbuffer_get_length(in));  // the client has gone: discard
    return;
  }
  bufferevent* down_bev = evhttp_connection_get_bufferevent(evhttp_request_get_connection(p->down));
  bool pause = evbuffer_get_length(bufferevent_get_output(down_bev)) +
                   evbuffer_get_length(in) > kProxyHighWater;
  if (pause) {
    bufferevent_disable(evhttp_connection_get_bufferevent(p->up_conn), EV_READ);
    evhttp_send_reply_chunk_with_cb(p->down, in, &OnDownDrained, p);
  } else {
    evhttp_send_reply_chunk(p->down, in);
  }
}

void OnProxyDone(evhttp_request* up, void* arg) {
  auto* p = static_cast<Proxy*>(arg);
  bool ok = up != nullptr && evhttp_request_get_response_code(up) != 0;
  if (evhttp_connection* dc = evhttp_request_get_connection(p->down)) {
    evhttp_connection_set_closecb(dc, nullptr, nullptr);
  }
  if (!p->started) {
    evkeyvalq* out = evhttp_request_get_output_headers(p->down);
    evhttp_add_header(out, "Content-Type", "text/plain; charset=utf-8");
    evbuffer* buf = evbuffer_new();
    if (evhttp_request_get_command(p->down) != EVHTTP_REQ_HEAD) {
      evbuffer_add_printf(buf, "bad gateway: the member that has the file did not answer\n");
    }
    evhttp_send_reply(p->down, 502, "Bad Gateway", buf);
    evbuffer_free(buf);
    if (p->count) p->count(502);
  } else if (ok || !DownAlive(p)) {
    evhttp_send_reply_end(p->down);  // frees a request whose client has gone
  } else {
    // Cut off mid-body: the client must see a broken transfer, not a short file.
    evhttp_connection_free(evhttp_request_get_connection(p->down));
  }
  // The upstream connection (opened with "Connection: close") is freed from the loop, not from
  // inside its own callback.
  timeval now{0, 0};
  if (event_base_once(p->base, -1, EV_TIMEOUT, &FreeUpstream, p->up_conn, &now) != 0) {
    DEPOT_LOG_WARN("http proxy: cannot schedule freeing an upstream connection");
  }
  p->up_conn = nullptr;
  if (p->done) p->done();
  delete p;
}

}  // namespace

void HttpServer::OnLocated(int, short, void* arg) {
  std::unique_ptr<Miss> m(static_cast<Miss*>(arg));
  HttpServer* self = m->self;
  auto count = [self](const char* outcome) {
    auto it = self->miss_outcomes_.find(outcome);
    if (it != self->miss_outcomes_.end()) it->second->Increment();
  };
  if (m->expired || (m->ip.empty() && m->no_address)) {
    count("overloaded");
    evhttp_add_header(evhttp_request_get_output_headers(m->req), "Retry-After", "1");
    return self->Finish(m->req, 503, "Service Unavailable",
                        m->expired ? "busy: the trackers are slow to answer\n"
                                   : "not on this member; the member that has it is not known yet\n");
  }
  if (m->ip.empty() && !m->answered) {
    count("tracker_error");
    evhttp_add_header(evhttp_request_get_output_headers(m->req), "Retry-After", "5");
    return self->Finish(m->req, 503, "Service Unavailable",
                        "not on this member, and no tracker answered where it is\n");
  }
  if (m->ip.empty()) {
    count("not_found");
    return self->Finish(m->req, 404, "Not Found", "not found\n");
  }
  // The same request, once, at the member that has it; depot_hop stops it from being sent on.
  std::string target = "/" + m->target.id.ToString() + "?" + m->target.query +
                       (m->target.query.empty() ? "" : "&") + "depot_hop=1";
  std::string authority = m->ip + ":" + std::to_string(m->http_port);
  if (self->opt_.miss == "redirect") {
    count("redirected");
    std::string location = "http://" + authority + target;
    evkeyvalq* out = evhttp_request_get_output_headers(m->req);
    evhttp_add_header(out, "Location", location.c_str());
    evhttp_add_header(out, "Cache-Control", "no-store");
    return self->Finish(m->req, 302, "Found", "found at " + location + "\n");
  }
  if (self->active_proxies_.load() >= kMaxProxies) {
    count("overloaded");
    evhttp_add_header(evhttp_request_get_output_headers(m->req), "Retry-After", "1");
    return self->Finish(m->req, 503, "Service Unavailable", "busy: too many proxied reads\n");
  }
  count("proxied");
  auto* p = new Proxy;
  p->down = m->req;
  p->base = m->base;
  p->count = [self](int code) { self->CountReply(code); };
  p->done = [self] { self->active_proxies_--; };
  p->up_conn = evhttp_connection_base_new(m->base, nullptr, m->ip.c_str(),
                                          static_cast<uint16_t>(m->http_port));
  if (p->up_conn == nullptr) {
    delete p;
    return self->Finish(m->req, 502, "Bad Gateway", "bad gateway\n");
  }
  self->active_proxies_++;
  evhttp_connection_set_timeout(p->up_conn, self->opt_.upstream_timeout);
  evhttp_connection_set_closecb(evhttp_request_get_connection(m->req), &OnDownClosed, p);
  evhttp_request* up = evhttp_request_new(&OnProxyDone, p);
  evhttp_request_set_header_cb(up, &OnProxyHeaders);
  evhttp_request_set_chunked_cb(up, &OnProxyChunk);
  evkeyvalq* in = evhttp_request_get_input_headers(m->req);
  evkeyvalq* up_out = evhttp_request_get_output_headers(up);
  evhttp_add_header(up_out, "Host", authority.c_str());
  evhttp_add_header(up_out, "Connection", "close");
  for (const char* h : {"Range", "If-None-Match", "If-Modified-Since"}) {
    if (const char* v = evhttp_find_header(in, h)) evhttp_add_header(up_out, h, v);
  }
  // On failure (no memory) libevent has freed `up` itself and has not called OnProxyDone.
  if (evhttp_make_request(p->up_conn, up, m->head ? EVHTTP_REQ_HEAD : EVHTTP_REQ_GET,
                          target.c_str()) != 0) {
    evhttp_connection_set_closecb(evhttp_request_get_connection(m->req), nullptr, nullptr);
    evhttp_connection_free(p->up_conn);
    self->active_proxies_--;
    delete p;
    return self->Finish(m->req, 502, "Bad Gateway", "bad gateway\n");
  }
}

}  // namespace depot::storage
