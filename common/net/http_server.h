// HttpServer: a small HTTP/1.1 server for JSON APIs that also streams large bodies.
//
// Why not evhttp: libevent 2.1's evhttp reads a request's whole body into memory before the
// handler runs, and opsd must take a 500 MiB upload in a few MiB. This server parses heads and
// small bodies on event loops (common/net/http_parse.h) and gives a request that streams to a
// worker thread, which owns the connection for that one exchange with plain blocking I/O and
// hands it back to its loop afterwards (keep-alive and pipelining continue).
//
// Three ways to serve a request, chosen per request by the Classifier from its head:
//   kInline  the body (at most max_body bytes) is buffered, the handler runs on the loop thread;
//            for fast handlers (an in-memory or LevelDB lookup).
//   kWorker  the same, but the handler runs on the worker pool (slow work: a password KDF, a call
//            into the Depot cluster). The connection reads nothing more until the answer is sent.
//   kStream  the StreamHandler gets an HttpStream on a worker: it reads the body piece by piece and
//            writes the response itself (bodies of any size, in bounded memory).
//
// Threading: Start/Stop from one thread. Handlers run on the loop threads (kInline) or the worker
// threads (kWorker, kStream), concurrently: they must be thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/base/status.h"
#include "common/net/http_parse.h"

namespace depot::net {

class EventLoop;

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  http::RequestHead head;
  std::string body;     // kInline / kWorker: the whole (decoded) body
  std::string peer_ip;  // the client's address
};

struct HttpResponse {
  int status = 200;
  HttpHeaders headers;  // Content-Length and Connection are added by the server
  std::string body;
  void Set(int code, std::string content_type, std::string text) {
    status = code;
    headers.emplace_back("Content-Type", std::move(content_type));
    body = std::move(text);
  }
};

// One request served by a worker with blocking I/O (kStream). Not thread-safe: one worker uses it.
class HttpStream {
 public:
  const http::RequestHead& head() const { return head_; }
  const std::string& peer_ip() const { return peer_ip_; }
  // Reads up to `max` bytes of the request body (Content-Length or chunked); 0 at its end.
  // IOError/TimedOut when the client stalls or goes away, InvalidArgument on a malformed chunked
  // body. Sends "100 Continue" first when the client asked for it.
  Result<size_t> ReadBody(char* buf, size_t max);
  // Sends the status line and headers. With a length, exactly that many body bytes must follow
  // (else the connection is closed after the handler); without one, the body is chunked (HTTP/1.1)
  // or ends with the connection (HTTP/1.0).
  Status SendHead(int status, const HttpHeaders& headers, std::optional<uint64_t> length);
  Status SendBody(const char* data, size_t n);
  // A whole small response in one call.
  Status Send(const HttpResponse& r);
  bool head_sent() const { return head_sent_; }

 private:
  friend class HttpServer;
  Status SendAll(const char* data, size_t n);
  Result<size_t> RecvSome(char* buf, size_t n);  // blocking recv of what is there (at least 1)
  Status Finish();  // ends a chunked body; false: the connection must close

  int fd_ = -1;
  http::RequestHead head_;
  std::string peer_ip_;
  std::string in_;  // bytes read from the socket but not consumed yet
  uint64_t body_left_ = 0;  // Content-Length bodies
  std::unique_ptr<http::ChunkedDecoder> chunked_;
  std::string decoded_;  // chunked: decoded bytes not handed out yet
  bool body_done_ = false;
  bool continue_sent_ = false;
  bool head_sent_ = false;
  bool is_head_request_ = false;
  bool chunked_out_ = false;
  std::optional<uint64_t> out_left_;
  bool broken_ = false;  // an I/O error or a short body: close after the handler
};

// kReject: the Classifier refused the request from its head alone (say, no valid token for a
// streaming route); its answer goes out at once and the connection closes without reading the
// body, so no worker ever waits on such a client.
enum class RouteMode { kInline, kWorker, kStream, kReject };

struct HttpServerOptions {
  std::string bind_addr = "127.0.0.1";
  int port = 0;               // 0: any free port (port() reports it)
  int loop_threads = 2;
  int worker_threads = 8;
  size_t max_queue = 1024;    // requests waiting for a worker; beyond: 503
  size_t max_head = 64 << 10;
  size_t max_body = 1 << 20;  // buffered bodies (kInline, kWorker); beyond: 413
  int idle_timeout = 60;      // seconds a keep-alive connection may sit idle
  int io_timeout = 60;        // seconds a client may stall mid-request or mid-response
  int max_connections = 4096;
};

class HttpServer {
 public:
  // Picks the mode from the head (and the client's address), on the loop. With kReject it fills
  // `*reject`.
  using Classifier = std::function<RouteMode(const http::RequestHead&, const std::string& peer,
                                             HttpResponse* reject)>;
  using Handler = std::function<void(const HttpRequest&, HttpResponse*)>;
  using StreamHandler = std::function<void(HttpStream&)>;
  // The body of the server's own error answers (400, 413, 503 ...), with its content type.
  using ErrorBody = std::function<std::pair<std::string, std::string>(int status,
                                                                      const std::string& message)>;

  HttpServer(HttpServerOptions options, Classifier classify, Handler handler,
             StreamHandler stream, ErrorBody error_body);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts the loops and workers. IOError when the address cannot be bound.
  Status Start();
  // Stops accepting, closes every connection, joins the threads. Idempotent.
  void Stop();
  int port() const { return port_; }
  int64_t connections() const { return connections_.load(); }

  static const char* Reason(int status);

 private:
  struct Conn;
  struct Loop;
  friend struct Conn;

  void Accept(Loop* loop, int fd, const std::string& peer);
  void OnReadable(Conn* c);
  void OnWritable(Conn* c);
  void Process(Conn* c);
  bool Dispatch(Conn* c);  // false: c is closed or no longer the caller's
  void QueueResponse(Conn* c, const HttpResponse& r, bool head_only);
  void Fail(Conn* c, int status, const std::string& message);
  void FailWith(Conn* c, const HttpResponse& r);  // answers, then a lingering close
  void FreeConn(Conn* c);
  bool FlushOut(Conn* c);  // false: c was closed
  void Close(Conn* c);
  void Resume(Conn* c);  // on the loop, after a worker is done with it
  void Sweep(Loop* loop);
  bool Submit(std::function<void()> job);
  void WorkerMain();

  HttpServerOptions opt_;
  Classifier classify_;
  Handler handler_;
  StreamHandler stream_;
  ErrorBody error_body_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::vector<std::unique_ptr<Loop>> loops_;
  std::atomic<int64_t> connections_{0};
  std::atomic<bool> stopping_{false};
  bool started_ = false;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;  // GUARDED_BY(mu_)
  bool workers_stop_ = false;               // GUARDED_BY(mu_)
  std::vector<std::thread> workers_;
};

// "Fri, 27 Nov 2026 17:00:00 GMT"
std::string HttpDate(int64_t unix_seconds);

// A non-blocking IPv4 listening socket on bind_addr:port (port 0: any free one, reported in
// *bound_port) with SO_REUSEADDR and TCP_NODELAY, which accepted connections inherit on Linux
// (a head and a sendfile body go out as separate writes: with Nagle the body would wait for
// the client's delayed ACK). InvalidArgument for a bad address, IOError when it cannot bind.
Result<int> ListenTcp(const std::string& bind_addr, int port, int* bound_port);

}  // namespace depot::net
