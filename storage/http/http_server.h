// HttpServer: storaged's HTTP reads (DESIGN.md section 8, doc/http.md): GET and HEAD of
// /<file ID> with Range (single and multiple), ETag / If-None-Match, Last-Modified /
// If-Modified-Since, Content-Type from conf/mime.types, Cache-Control immutable, ?filename= as
// Content-Disposition, the FastDFS-compatible anti-leech token, /healthz and /metrics.
//
// libevent evhttp, one event base per thread, each accepting on its own descriptor of one
// listening socket. Bodies over 32 KiB go out with sendfile (evbuffer file segments); smaller ones
// are read (pread) into the reply. The open, fstat and small reads of a file ID are the only disk
// work on a loop, as with nginx; asking the trackers about a missing file runs on a thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/base/status.h"
#include "storage/http/http_util.h"

struct event_base;
struct evhttp;
struct evhttp_request;

namespace prometheus {
class Counter;
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
  // A file not (yet) on this member: "redirect" (302 to a member that has it, as the trackers
  // say), "proxy" (fetch it from that member and pass it on) or "off" (404).
  std::string miss = "redirect";
  int upstream_timeout = 30;      // seconds, proxy mode
  size_t max_pending_misses = 256;  // misses waiting for a tracker answer; more: 503
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
  struct Miss;
  static void OnRequest(evhttp_request* req, void* arg);
  void Handle(evhttp_request* req);
  void ServeFile(evhttp_request* req, const http::Target& t, bool head);
  // Misses: the tracker is asked on the resolver thread (blocking I/O stays off the loops), and
  // the answer goes back to the request's loop.
  void QueueMiss(evhttp_request* req, const http::Target& t, bool head);
  void ResolverLoop();
  void Locate(Miss* m);
  static void OnLocated(int fd, short what, void* arg);
  void Finish(evhttp_request* req, int code, const char* reason, std::string_view text = {});
  void CountReply(int code);

  StorageServer* server_;
  HttpOptions opt_;
  prometheus::Registry* registry_;
  http::MimeTable mime_;
  std::string cache_control_;  // "public, max-age=N, immutable"
  std::vector<std::unique_ptr<Loop>> loops_;
  int listen_fd_ = -1;
  int port_ = 0;

  std::mutex miss_mu_;
  std::condition_variable miss_cv_;
  std::deque<std::unique_ptr<Miss>> misses_;  // GUARDED_BY(miss_mu_)
  bool miss_stop_ = false;                    // GUARDED_BY(miss_mu_)
  std::thread resolver_;

  std::atomic<int> active_proxies_{0};  // proxied reads in flight (proxy mode)
  static constexpr int kMaxProxies = 256;
  std::map<int, prometheus::Counter*> replies_;  // by status code (0: any other)
  std::map<std::string, prometheus::Counter*> miss_outcomes_;
};

}  // namespace depot::storage
