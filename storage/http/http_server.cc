#include "storage/http/http_server.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "common/base/hash.h"
#include "common/base/logging.h"
#include "storage/storage_server.h"

namespace depot::storage {

struct HttpServer::Loop {
  event_base* base = nullptr;
  evhttp* http = nullptr;
  std::thread thread;
};

namespace {

constexpr const char* kBuiltinMime =
    "text/plain txt\nimage/jpeg jpg jpeg\nimage/png png\nimage/gif gif\nvideo/mp4 mp4\n"
    "application/json json\ntext/html html htm\n";

void Reply(evhttp_request* req, int code, const char* reason, std::string_view text = {}) {
  evkeyvalq* out = evhttp_request_get_output_headers(req);
  evhttp_add_header(out, "Content-Type", "text/plain; charset=utf-8");
  evbuffer* buf = evbuffer_new();
  if (!text.empty()) evbuffer_add(buf, text.data(), text.size());
  evhttp_send_reply(req, code, reason, buf);
  evbuffer_free(buf);
}

std::string ExtensionOf(const std::string& name) {
  size_t dot = name.rfind('.');
  return dot == std::string::npos ? std::string() : name.substr(dot + 1);
}

}  // namespace

HttpServer::HttpServer(StorageServer* server, HttpOptions options, prometheus::Registry* registry)
    : server_(server), opt_(std::move(options)), registry_(registry) {}

HttpServer::~HttpServer() { Stop(); }

Status HttpServer::Start() {
  if (opt_.mime_types.empty()) {
    mime_ = http::MimeTable::Parse(kBuiltinMime);
  } else {
    DEPOT_ASSIGN_OR_RETURN(mime_, http::MimeTable::Load(opt_.mime_types));
  }
  evthread_use_pthreads();
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return Status::FromErrno(errno, "socket");
  int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(opt_.port));
  if (inet_pton(AF_INET, opt_.bind_addr.c_str(), &addr.sin_addr) != 1) {
    return Status::InvalidArgument("http bind address:", opt_.bind_addr);
  }
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return Status::FromErrno(errno, "bind http", opt_.bind_addr + ":" + std::to_string(opt_.port));
  }
  if (listen(listen_fd_, 1024) != 0) return Status::FromErrno(errno, "listen http");
  socklen_t len = sizeof addr;
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  for (int i = 0; i < std::max(1, opt_.threads); ++i) {
    auto loop = std::make_unique<Loop>();
    loop->base = event_base_new();
    loop->http = loop->base ? evhttp_new(loop->base) : nullptr;
    if (loop->http == nullptr) return Status::Internal("evhttp_new failed");
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
    if (evhttp_accept_socket(loop->http, listen_fd_) != 0) {
      return Status::Internal("evhttp_accept_socket failed");
    }
    event_base* base = loop->base;
    loop->thread = std::thread([base] { event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY); });
    loops_.push_back(std::move(loop));
  }
  DEPOT_LOG_INFO("http reads on {}:{} ({} threads, token {})", opt_.bind_addr, port_,
                 loops_.size(), opt_.token ? "required" : "off");
  return Status::OK();
}

void HttpServer::Stop() {
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
    return Reply(req, 405, "Method Not Allowed", "only GET and HEAD\n");
  }
  if (uri == "/healthz") return Reply(req, 200, "OK", "ok\n");
  if (uri == "/metrics" && registry_ != nullptr) {
    std::string text = prometheus::TextSerializer().Serialize(registry_->Collect());
    evkeyvalq* out = evhttp_request_get_output_headers(req);
    evhttp_add_header(out, "Content-Type", "text/plain; version=0.0.4");
    evbuffer* buf = evbuffer_new();
    evbuffer_add(buf, text.data(), text.size());
    evhttp_send_reply(req, 200, "OK", buf);
    evbuffer_free(buf);
    return;
  }
  auto t = http::ParseTarget(uri, server_->config().group_name);
  if (!t.ok()) {
    if (t.status().IsNotFound()) return Reply(req, 404, "Not Found", "not found\n");
    return Reply(req, 400, "Bad Request", "bad request: not a file ID\n");
  }
  if (opt_.token) {
    Status s = http::CheckToken(*t, opt_.secret, opt_.token_ttl, UnixSeconds());
    if (!s.ok()) return Reply(req, 403, "Forbidden", "forbidden: " + s.message() + "\n");
  }
  ServeFile(req, *t, head);
}

void HttpServer::ServeFile(evhttp_request* req, const http::Target& t, bool head) {
  auto path = server_->PathForFile(t.id);
  if (!path.ok()) return Reply(req, 400, "Bad Request", "bad request: store path\n");
  std::string full = (*path)->FullPath(t.id.RelativePath());
  int fd = open(full.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    if (fd >= 0) close(fd);
    return Reply(req, 404, "Not Found", "not found\n");
  }
  uint64_t size = static_cast<uint64_t>(st.st_size);
  evkeyvalq* in = evhttp_request_get_input_headers(req);
  evkeyvalq* out = evhttp_request_get_output_headers(req);
  std::string etag = http::ETagFor(t.id);
  int64_t modified = t.id.fields.create_time;  // the same on every member
  evhttp_add_header(out, "ETag", etag.c_str());
  evhttp_add_header(out, "Last-Modified", http::HttpDate(modified).c_str());
  std::string cache = "public, max-age=" + std::to_string(opt_.cache_max_age) + ", immutable";
  evhttp_add_header(out, "Cache-Control", cache.c_str());
  evhttp_add_header(out, "Accept-Ranges", "bytes");
  const std::string& type = mime_.TypeFor(ExtensionOf(t.id.name));
  if (!t.filename.empty()) {
    evhttp_add_header(out, "Content-Disposition", http::ContentDisposition(t.filename).c_str());
  }
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
    evhttp_send_reply(req, 304, "Not Modified", nullptr);
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
      return Reply(req, 416, "Range Not Satisfiable");
    }
    ranges = std::move(*r);
  }
  evbuffer* body = evbuffer_new();
  int code = 200;
  const char* reason = "OK";
  if (ranges.empty()) {
    evhttp_add_header(out, "Content-Type", type.c_str());
    if (head || size == 0) {
      close(fd);
    } else {
      evbuffer_add_file(body, fd, 0, static_cast<ev_off_t>(size));  // takes fd
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
      evbuffer_add_file(body, fd, static_cast<ev_off_t>(r.first), static_cast<ev_off_t>(r.size()));
    }
  } else {
    code = 206;
    reason = "Partial Content";
    std::string boundary = HexEncode(SecureRandomBytes(12));
    std::string ctype = "multipart/byteranges; boundary=" + boundary;
    evhttp_add_header(out, "Content-Type", ctype.c_str());
    evbuffer_file_segment* seg =
        evbuffer_file_segment_new(fd, 0, static_cast<ev_off_t>(size), EVBUF_FS_CLOSE_ON_FREE);
    if (seg == nullptr) {
      close(fd);
      evbuffer_free(body);
      return Reply(req, 500, "Internal Server Error");
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
}

}  // namespace depot::storage
