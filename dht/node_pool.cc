#include "dht/node_pool.h"

#include <sys/socket.h>

#include <cerrno>

#include "common/base/conf.h"

namespace depot::dht {

NodePool::NodePool(std::string secret, int timeout_ms, size_t max_idle_per_node)
    : secret_(std::move(secret)), timeout_ms_(timeout_ms), max_idle_(max_idle_per_node) {}

Result<std::unique_ptr<net::BlockingConn>> NodePool::Open(const std::string& node) {
  std::string host;
  int port = 0;
  DEPOT_RETURN_IF_ERROR(ParseHostPort(node, &host, &port));
  DEPOT_ASSIGN_OR_RETURN(auto conn, net::BlockingConn::Connect(host, port, timeout_ms_));
  conn->set_timeout_ms(timeout_ms_);
  DEPOT_RETURN_IF_ERROR(conn->Authenticate(secret_));
  return conn;
}

Result<net::Reply> NodePool::Call(const std::string& node, uint8_t cmd, std::string_view body,
                                  uint64_t max_reply) {
  std::unique_ptr<net::BlockingConn> conn;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = idle_.find(node);
    while (it != idle_.end() && !it->second.empty() && conn == nullptr) {
      conn = std::move(it->second.back());
      it->second.pop_back();
      // A connection the server has closed (idle timeout, restart) shows an EOF or stray bytes:
      // drop it rather than fail a call on it.
      char probe;
      ssize_t n = recv(conn->fd(), &probe, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n == 0 || n == 1 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) conn.reset();
    }
  }
  bool reused = conn != nullptr;
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (conn == nullptr) {
      DEPOT_ASSIGN_OR_RETURN(conn, Open(node));
      reused = false;
    }
    auto reply = conn->Call(cmd, body, max_reply);
    if (reply.ok() && conn->healthy()) {
      std::lock_guard<std::mutex> l(mu_);
      auto& v = idle_[node];
      if (v.size() < max_idle_) v.push_back(std::move(conn));
      return reply;
    }
    conn.reset();
    if (reply.ok()) return reply;
    // A reused connection may have died since the probe (the node restarted): one fresh try.
    // A fresh connection that fails is the node's answer.
    if (!reused) return reply;
    Forget(node);
  }
  return Status::Unavailable("dht node unreachable:", node);
}

void NodePool::Forget(const std::string& node) {
  std::lock_guard<std::mutex> l(mu_);
  idle_.erase(node);
}

}  // namespace depot::dht
