// DhtServer: one depot-dhtd node (doc/dht.md). Owns the frame server, the LevelDB Store, the
// membership view and its Ring, the worker pools, the membership timer and the metrics.
//
// Start() opens the store, binds, sends JOIN to the configured peers, pulls its share of keys from
// every other node (SCAN with the ownership filter) and only then serves client operations: when
// it returns, the node is caught up. Until then client operations (250..254) are answered EAGAIN,
// while REPLICATE and SCAN are served.
//
// Repair: a REPLICATE that fails becomes a hint, queued per target node (bounded) and retried with
// back-off by the hint thread; the anti-entropy thread pulls this node's share from every other
// member every anti_entropy_interval seconds, and from every member learnt after the start-up.
//
// Threading: handlers decode on the network loops and hand the work to a worker pool (LevelDB and
// peer calls block): client operations, which call other nodes, run on `ops`; peer operations,
// which never call out, on `peer`, so two nodes replicating to each other cannot exhaust each
// other's workers. A coordinator sends its REPLICATE calls in parallel on `replicate` and waits
// for them at most kReplicateWaitMs. Membership refresh and JOIN forwarding run on the timer loop;
// hints and anti-entropy have a thread each.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/metrics/metrics.h"
#include "common/net/event_loop.h"
#include "common/net/frame_server.h"
#include "dht/config.h"
#include "dht/dht_proto.h"
#include "dht/node_pool.h"
#include "dht/ring.h"
#include "dht/store.h"

namespace depot::dht {

// A fixed set of threads running posted closures in order. Stop() runs what is queued, then joins.
class WorkerPool {
 public:
  explicit WorkerPool(int threads);
  ~WorkerPool();
  void Post(std::function<void()> fn);
  void Stop();

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;  // GUARDED_BY(mu_)
  bool stopping_ = false;                     // GUARDED_BY(mu_)
  std::vector<std::thread> threads_;
};

class DhtServer {
 public:
  explicit DhtServer(DhtConfig config);
  ~DhtServer();

  // Binds, joins and catches up (see above). IOError when the store or a port cannot be opened.
  Status Start();
  void Stop();
  int port() const { return server_ ? server_->port() : 0; }
  int metrics_port() const { return metrics_ ? metrics_->port() : 0; }

  // --- for the handlers (dht/handlers.cc) ---
  const DhtConfig& config() const { return config_; }
  const std::string& self() const { return self_; }
  Store& store() { return *store_; }
  bool catching_up() const { return catching_up_.load(); }
  std::shared_ptr<const Ring> ring();
  std::vector<std::string> Members();
  // Adds nodes to the membership (persisted); returns those that were new.
  std::vector<std::string> AddMembers(const std::vector<std::string>& nodes);
  // Sends JOIN(node) to every member except this node, `node` and `from` (timer loop).
  void ForwardJoin(const std::string& node, const std::string& from);
  // True when this node is in the key's preference list in its current view: only then may it
  // coordinate an operation on the key (others answer EAGAIN).
  bool Owns(std::string_view key);
  // Copies a record this node just wrote to the other nodes of its preference list for the key,
  // in parallel, waiting at most kReplicateWaitMs in all. A failed call becomes a hint for that
  // node; nothing is returned.
  void Replicate(const std::string& key, const Record& r);
  // Records waiting in the hint queues (all targets).
  size_t HintsQueued();
  void RunOp(std::function<void()> fn) { ops_->Post(std::move(fn)); }
  void RunPeer(std::function<void()> fn) { peer_->Post(std::move(fn)); }
  void UpdateGauges();

 private:
  // A hinted-handoff queue: the newest record of each key a target missed.
  struct HintQueue {
    std::map<std::string, Record> records;
    int64_t next_try_ns = 0;  // MonotonicNanos() before which the target is not retried
    int backoff_ms = 0;       // 0: the last call succeeded
    bool overflowed = false;  // a hint was dropped since the queue was last empty
  };

  void JoinPeers();
  // Pulls this node's share from `node`; returns the records applied (counted in `applied`).
  Result<uint64_t> PullFrom(const std::string& node, prometheus::Counter* applied);
  void RefreshMembership();
  void AddHint(const std::string& node, const std::string& key, const Record& r);
  // A REPLICATE to `node` succeeded: its hints, if any, are due at once.
  void NodeAnswers(const std::string& node);
  void HintLoop();
  void AntiEntropyLoop();

  DhtConfig config_;
  std::string self_;
  std::unique_ptr<Store> store_;
  std::atomic<bool> catching_up_{true};
  std::mutex members_mu_;
  std::set<std::string> members_;      // GUARDED_BY(members_mu_)
  std::shared_ptr<const Ring> ring_;   // GUARDED_BY(members_mu_)
  std::unique_ptr<NodePool> replicate_pool_;  // short deadline: on the write path
  std::unique_ptr<NodePool> peer_pool_;       // network_timeout: catch-up, membership
  std::unique_ptr<WorkerPool> ops_;
  std::unique_ptr<WorkerPool> peer_;
  std::unique_ptr<WorkerPool> replicate_;   // the parallel REPLICATE calls of coordinators
  std::unique_ptr<NodePool> hint_pool_;     // hint delivery

  std::mutex hints_mu_;
  std::condition_variable hints_cv_;
  std::map<std::string, HintQueue> hints_;  // GUARDED_BY(hints_mu_), by target node
  size_t hints_total_ = 0;                  // GUARDED_BY(hints_mu_)
  bool hints_stopping_ = false;             // GUARDED_BY(hints_mu_)
  std::thread hint_thread_;

  std::mutex ae_mu_;
  std::condition_variable ae_cv_;
  std::set<std::string> ae_pending_;  // GUARDED_BY(ae_mu_): members learnt, not yet pulled from
  bool ae_stopping_ = false;          // GUARDED_BY(ae_mu_)
  std::thread ae_thread_;
  std::unique_ptr<metrics::MetricsServer> metrics_;
  std::unique_ptr<metrics::RpcMetrics> rpc_metrics_;
  prometheus::Gauge* keys_gauge_ = nullptr;
  prometheus::Gauge* refs_gauge_ = nullptr;
  prometheus::Gauge* nodes_gauge_ = nullptr;
  prometheus::Counter* replicate_errors_ = nullptr;
  prometheus::Counter* catchup_keys_ = nullptr;
  prometheus::Counter* repaired_keys_ = nullptr;
  prometheus::Gauge* hints_gauge_ = nullptr;
  prometheus::Counter* hints_delivered_ = nullptr;
  prometheus::Counter* hints_dropped_ = nullptr;
  std::unique_ptr<net::EventLoop> timer_loop_;
  std::unique_ptr<net::FrameServer> server_;
};

// The command table (dht/handlers.cc).
void RegisterHandlers(DhtServer* d, net::FrameServer* s);

}  // namespace depot::dht
