// HttpServer: storaged's HTTP reads (DESIGN.md section 8, doc/http.md): GET and HEAD of
// /<file ID> with Range (single and multiple), ETag / If-None-Match, Last-Modified /
// If-Modified-Since, Content-Type from conf/mime.types, Cache-Control immutable, ?filename= as
// Content-Disposition, the FastDFS-compatible anti-leech token, /healthz and /metrics.
//
// libevent evhttp, one event base per thread, all accepting on one listening socket. Bodies go
// out with sendfile (evbuffer file segments). Opening a file is the only disk work on a loop
// (the open and fstat of a file ID, as nginx does).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/base/status.h"
#include "storage/http/http_util.h"

struct event_base;
struct evhttp;
struct evhttp_request;

namespace prometheus {
class Registry;
}

namespace depot::storage {

class StorageServer;

struct HttpOptions {
  std::string bind_addr = "0.0.0.0";
  int port = 8888;  // 0: any free port
  int threads = 2;
  int cache_max_age = 31536000;  // seconds, Cache-Control max-age
  bool token = false;            // anti-leech token required
  std::string secret;            // token secret
  int token_ttl = 900;           // seconds
  std::string mime_types;        // path of a mime.types file (empty: built-in minimal)
  size_t max_ranges = 64;        // more ranges in one request: 416
};

class HttpServer {
 public:
  HttpServer(StorageServer* server, HttpOptions options, prometheus::Registry* registry);
  ~HttpServer();
  Status Start();
  void Stop();
  int port() const { return port_; }

 private:
  struct Loop;
  static void OnRequest(evhttp_request* req, void* arg);
  void Handle(evhttp_request* req);
  void ServeFile(evhttp_request* req, const http::Target& t, bool head);

  StorageServer* server_;
  HttpOptions opt_;
  prometheus::Registry* registry_;
  http::MimeTable mime_;
  std::vector<std::unique_ptr<Loop>> loops_;
  int listen_fd_ = -1;
  int port_ = 0;
};

}  // namespace depot::storage
