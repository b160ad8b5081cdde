// NodePool: authenticated, pooled connections to dht nodes, shared by DhtClient and by
// depot-dhtd (replication, catch-up, membership). Every dht command is internal, so each new
// connection proves the cluster secret once (BlockingConn::Authenticate) and is then reused.
// Thread-safe.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/status.h"
#include "common/net/blocking_conn.h"

namespace depot::dht {

class NodePool {
 public:
  // `timeout_ms` bounds the connect and every send/receive of a call.
  NodePool(std::string secret, int timeout_ms, size_t max_idle_per_node = 16);

  // Sends one frame to `node` ("host:port") and reads the reply (body <= max_reply). Fails with
  // Unavailable / TimedOut / IOError when the node cannot be reached or the connection breaks,
  // PermissionDenied when the secret is refused. A reply with a non-zero status is not an error
  // here: the caller interprets reply.status. A pooled connection found dead on first use is
  // replaced by a fresh one once.
  Result<net::Reply> Call(const std::string& node, uint8_t cmd, std::string_view body,
                          uint64_t max_reply);
  // Drops idle connections to `node`.
  void Forget(const std::string& node);

 private:
  Result<std::unique_ptr<net::BlockingConn>> Open(const std::string& node);

  const std::string secret_;
  const int timeout_ms_;
  const size_t max_idle_;
  std::mutex mu_;
  std::map<std::string, std::vector<std::unique_ptr<net::BlockingConn>>> idle_;  // GUARDED_BY(mu_)
};

}  // namespace depot::dht
