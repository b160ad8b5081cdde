// FrameServer: a listener plus N event-loop threads serving the FastDFS framing (10-byte header,
// then the body). Used by depot-trackerd and depot-storaged.
//
// Each accepted connection lives on one loop for its whole life. The server reads one request at
// a time: the header, then either the whole body (buffered commands, bounded by the command's
// max_body) or the body in chunks handed to a BodyStream with back-pressure (uploads). A handler
// answers with Connection::Reply*; until it does, the connection reads nothing more. Handlers may
// finish on another thread by posting back to conn->loop().
//
// Limits: a frame whose body exceeds the command's bound gets an error reply and the connection is
// closed; unknown commands get EINVAL and the connection survives; connections idle longer than
// idle_timeout, or stalled mid-frame longer than network_timeout, are closed; max_connections caps
// concurrent connections. Internal commands (CommandSpec::internal) need the cluster-secret
// handshake (kDepotAuthChallenge / kDepotAuthProof, doc/protocol.md) first.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/base/status.h"
#include "common/net/event_loop.h"
#include "common/proto/protocol.h"

struct event;
struct evbuffer;
struct evconnlistener;
struct sockaddr;

namespace depot::net {

class Connection;
using ConnectionPtr = std::shared_ptr<Connection>;

// Receives the body of a streaming command in chunks. OnChunk is called on the loop thread with
// the next bytes (`last` on the final one; an empty body gives one empty last chunk). After each
// chunk the stream must call conn->ContinueBody() (any thread) before it gets the next one, or
// reply / close. The stream is destroyed when the request ends.
class BodyStream {
 public:
  virtual ~BodyStream() = default;
  virtual void OnChunk(const ConnectionPtr& conn, std::string chunk, bool last) = 0;
  // The connection died mid-body: release resources (temp files) here.
  virtual void OnAbort() {}
};

struct CommandSpec {
  // Largest body accepted; larger frames are refused and the connection is closed.
  uint64_t max_body = 64 * 1024;
  bool internal = false;  // needs the cluster-secret handshake
  // Buffered command: called with the whole body.
  std::function<void(const ConnectionPtr&, const proto::FrameHeader&, std::string body)> handle;
  // Streaming command: creates the stream that will receive the body.
  std::function<std::unique_ptr<BodyStream>(const ConnectionPtr&, const proto::FrameHeader&)>
      stream;
};

// Hooks for metrics; called on loop threads.
class ServerObserver {
 public:
  virtual ~ServerObserver() = default;
  virtual void OnRequestDone(uint8_t cmd, uint8_t status, double seconds, uint64_t bytes_in,
                             uint64_t bytes_out) {}
  virtual void OnConnectionCountChanged(int64_t count) {}
};

struct ServerOptions {
  std::string bind_addr = "0.0.0.0";
  int port = 0;  // 0: any free port, see FrameServer::port()
  int threads = 2;
  int max_connections = 1024;
  int idle_timeout_s = 900;
  int network_timeout_s = 30;
  size_t chunk_size = 256 * 1024;        // streamed body chunk
  size_t read_high_water = 1024 * 1024;  // stop reading the socket above this
  size_t write_high_water = 4 * 1024 * 1024;
  std::string cluster_secret;  // empty: internal commands are refused
  // When not empty, only peers whose IPv4 address matches an entry (a.b.c.d or a.b.c.d/n) may
  // take the cluster-secret handshake.
  std::vector<std::string> allow_hosts;
};

// Validates one allow_hosts entry (IPv4 address or CIDR block).
Status ValidateAllowEntry(const std::string& entry);
// True when `ip` matches an entry of `allow` (an empty list allows everyone).
bool HostAllowed(const std::string& ip, const std::vector<std::string>& allow);

class FrameServer {
 public:
  explicit FrameServer(ServerOptions options);
  ~FrameServer();

  // Registers a command before Start().
  void Register(uint8_t cmd, CommandSpec spec);
  void SetObserver(ServerObserver* observer) { observer_ = observer; }

  // Binds and starts the loop threads. IOError when the address cannot be bound.
  Status Start();
  // Stops accepting and closes every connection; the loops keep running, so that work still
  // in flight on other threads (disk threads) may post to them. Blocks until done.
  void CloseAll();
  // CloseAll(), then stops the loop threads; returns when they have exited. Call it only after
  // everything that may post to the loops (disk threads) has finished.
  void Stop();
  int port() const { return port_; }
  int64_t connection_count() const { return connections_.load(); }
  const ServerOptions& options() const { return options_; }

 private:
  friend class Connection;
  static void OnAccept(evconnlistener* l, int fd, sockaddr* addr, int socklen, void* arg);
  static void OnAcceptError(evconnlistener* l, void* arg);
  void HandleAuth(const ConnectionPtr& conn, const proto::FrameHeader& h, std::string body);
  void SweepTimeouts(EventLoop* loop);

  ServerOptions options_;
  std::unordered_map<uint8_t, CommandSpec> commands_;
  ServerObserver* observer_ = nullptr;
  std::unique_ptr<EventLoop> accept_loop_;
  std::vector<std::unique_ptr<EventLoop>> loops_;
  evconnlistener* listener_ = nullptr;
  int port_ = 0;
  std::atomic<int64_t> connections_{0};
  std::atomic<uint64_t> next_loop_{0};
  bool started_ = false;
  bool closed_all_ = false;
  std::mutex conns_mu_;
  std::unordered_set<ConnectionPtr> conns_;  // GUARDED_BY(conns_mu_)
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(FrameServer* server, EventLoop* loop, int fd, std::string peer);
  ~Connection();

  // All of these must run on loop(). Reply* ends the current request.
  void Reply(uint8_t status, std::string_view body = {});
  void ReplyStatus(const Status& s) { Reply(proto::StatusToWire(s)); }
  // Reply() from any thread (a disk thread): posted to the connection's loop.
  void PostReply(uint8_t status, std::string body = {});
  // Answers with an error status and closes: nothing queued behind this request on the
  // connection is processed (a pipelining peer must not see later requests applied after one
  // failed). ReplyAndClose on the loop, PostReplyAndClose from any thread.
  void ReplyAndClose(uint8_t status) { ErrorAndClose(status); }
  void PostReplyAndClose(uint8_t status);
  // Sends a success header announcing `len` bytes, then `head` (already in memory) followed by
  // `len - head.size()` bytes of `fd` from `offset` via sendfile. Takes ownership of fd; `keep`
  // (optional) is released with it, once the bytes are sent or the connection is gone.
  void ReplyFile(std::string head, int fd, uint64_t offset, uint64_t len,
                 std::shared_ptr<void> keep = nullptr);
  void ContinueBody();  // any thread
  // Runs once on the loop thread when the connection closes (for any reason).
  void set_close_hook(std::function<void()> hook) { close_hook_ = std::move(hook); }
  void Close();         // closes after pending output is flushed

  EventLoop* loop() const { return loop_; }
  const std::string& peer() const { return peer_; }
  std::string peer_ip() const;
  bool closed() const { return closed_; }
  bool authenticated() const { return authenticated_; }
  const proto::FrameHeader& request() const { return request_; }

  void Attach();  // on the loop thread: sets up buffers and events and starts reading

 private:
  friend class FrameServer;
  enum class State { kHeader, kBody, kStream, kDiscard, kBusy, kClosing };
  static void OnReadable(int fd, short what, void* arg);
  static void OnWritable(int fd, short what, void* arg);
  void ReadSocket();
  // Writes what it can of the output now; arms the write event only when the socket is full.
  void Flush();
  void SetReading(bool on);
  void Release();
  void Process();
  void DeliverChunk();
  void FinishRequest(uint64_t bytes_out, uint8_t status);
  void Abort();
  // Closes the connection when the peer has been idle (idle_timeout) or stalled mid-frame
  // (network_timeout). Called by the loop's sweep.
  void CheckTimeout(int64_t now_ns);
  void ErrorAndClose(uint8_t status);

  FrameServer* server_;
  EventLoop* loop_;
  int fd_;
  std::string peer_;
  event* read_ev_ = nullptr;
  event* write_ev_ = nullptr;
  evbuffer* in_ = nullptr;
  evbuffer* out_ = nullptr;
  bool attached_ = false;
  bool reading_ = false;
  bool writing_ = false;
  State state_ = State::kHeader;
  proto::FrameHeader request_;
  const CommandSpec* spec_ = nullptr;
  uint64_t remaining_ = 0;
  bool chunk_in_flight_ = false;
  std::unique_ptr<BodyStream> stream_;
  int64_t request_start_ns_ = 0;
  bool closed_ = false;
  bool authenticated_ = false;
  std::string nonce_;
  int64_t last_progress_ns_ = 0;
  bool in_process_ = false;
  std::function<void()> close_hook_;
};

}  // namespace depot::net
