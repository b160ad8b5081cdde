#include "dht/dht_server.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>

#include "common/base/hash.h"
#include "common/base/logging.h"

namespace depot::dht {
namespace {

// Deadline of a REPLICATE call (connect, send, receive each). It sits on the write path.
constexpr int kReplicateTimeoutMs = 400;
// How long a coordinator waits for all its REPLICATE calls together (they run in parallel). It
// must stay well under the clients' per-call deadline (DhtClientOptions::timeout_ms, 1 s by
// default), or a client would give up on the coordinator and retry the write on the next replica.
// A call still running at the deadline finishes in the background (a failure becomes a hint).
constexpr int kReplicateWaitMs = 500;
constexpr int kWorkersPerThread = 4;
constexpr int kMaxReplicateWorkers = 256;
constexpr int kRefreshMs = 2000;
// Hinted handoff: at most this many records queued per target node (further ones are dropped:
// anti-entropy repairs them), delivered with this call deadline, retried after a failure with a
// back-off doubling from the minimum to the maximum, at most this many per turn of a target.
constexpr size_t kMaxHintsPerNode = 100000;
constexpr int kHintTimeoutMs = 2000;
constexpr int kHintMinBackoffMs = 100;
constexpr int kHintMaxBackoffMs = 10000;
constexpr int kHintBatch = 1000;

}  // namespace

WorkerPool::WorkerPool(int threads) {
  for (int i = 0; i < threads; ++i) {
    threads_.emplace_back([this] {
      for (;;) {
        std::function<void()> fn;
        {
          std::unique_lock<std::mutex> l(mu_);
          cv_.wait(l, [this] { return stopping_ || !queue_.empty(); });
          if (queue_.empty()) return;
          fn = std::move(queue_.front());
          queue_.pop_front();
        }
        fn();
      }
    });
  }
}

WorkerPool::~WorkerPool() { Stop(); }

void WorkerPool::Post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> l(mu_);
    queue_.push_back(std::move(fn));
  }
  cv_.notify_one();
}

void WorkerPool::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

DhtServer::DhtServer(DhtConfig config) : config_(std::move(config)) {}

DhtServer::~DhtServer() { Stop(); }

std::shared_ptr<const Ring> DhtServer::ring() {
  std::lock_guard<std::mutex> l(members_mu_);
  return ring_;
}

std::vector<std::string> DhtServer::Members() {
  std::lock_guard<std::mutex> l(members_mu_);
  return {members_.begin(), members_.end()};
}

std::vector<std::string> DhtServer::AddMembers(const std::vector<std::string>& nodes) {
  std::vector<std::string> added;
  std::lock_guard<std::mutex> l(members_mu_);
  for (const auto& n : nodes) {
    if (members_.count(n) || !ValidateNodeId(n).ok()) continue;
    Status s = store_->AddNode(n);
    if (!s.ok()) DEPOT_LOG_ERROR("cannot persist member {}: {}", n, s.ToString());
    members_.insert(n);
    added.push_back(n);
  }
  if (!added.empty()) {
    ring_ = std::make_shared<const Ring>(std::vector<std::string>(members_.begin(), members_.end()),
                                         config_.vnodes);
    for (const auto& n : added) DEPOT_LOG_INFO("member added: {} ({} nodes)", n, members_.size());
    if (nodes_gauge_) nodes_gauge_->Set(static_cast<double>(members_.size()));
    // A member learnt now may hold records this node owns (it was unknown at the catch-up): the
    // anti-entropy thread pulls from it (the start-up catch-up clears what it covers itself).
    {
      std::lock_guard<std::mutex> a(ae_mu_);
      for (const auto& n : added) {
        if (n != self_) ae_pending_.insert(n);
      }
    }
    ae_cv_.notify_all();
  }
  return added;
}

bool DhtServer::Owns(std::string_view key) {
  return ring()->Owns(self_, key, config_.replicas);
}

void DhtServer::UpdateGauges() {
  if (keys_gauge_) keys_gauge_->Set(static_cast<double>(store_->live_keys()));
  if (refs_gauge_) refs_gauge_->Set(static_cast<double>(store_->references()));
}

Status DhtServer::Start() {
  DEPOT_ASSIGN_OR_RETURN(store_, Store::Open(config_.data_path, config_.durable_writes));
  DEPOT_LOG_INFO("dht store {}: {} live keys", config_.data_path, store_->live_keys());

  metrics_ = std::make_unique<metrics::MetricsServer>();
  if (config_.metrics_port >= 0) {
    DEPOT_RETURN_IF_ERROR(metrics_->Start(config_.bind_addr, config_.metrics_port));
  }
  auto& reg = metrics_->registry();
  rpc_metrics_ = std::make_unique<metrics::RpcMetrics>(reg, "dht");
  keys_gauge_ = &prometheus::BuildGauge()
                     .Name("depot_dht_keys")
                     .Help("Live keys held by this dht node (its replicas included)")
                     .Register(reg)
                     .Add({});
  refs_gauge_ = &prometheus::BuildGauge()
                     .Name("depot_dht_references")
                     .Help("Sum of the counts of the live keys held by this dht node")
                     .Register(reg)
                     .Add({});
  nodes_gauge_ = &prometheus::BuildGauge()
                      .Name("depot_dht_nodes")
                      .Help("Members of the dht known to this node, itself included")
                      .Register(reg)
                      .Add({});
  replicate_errors_ = &prometheus::BuildCounter()
                           .Name("depot_dht_replicate_errors_total")
                           .Help("REPLICATE calls to other nodes that failed")
                           .Register(reg)
                           .Add({});
  catchup_keys_ = &prometheus::BuildCounter()
                       .Name("depot_dht_catchup_keys_total")
                       .Help("Records applied while catching up from other nodes")
                       .Register(reg)
                       .Add({});
  repaired_keys_ = &prometheus::BuildCounter()
                        .Name("depot_dht_antientropy_keys_total")
                        .Help("Records applied by anti-entropy pulls after the start-up")
                        .Register(reg)
                        .Add({});
  hints_gauge_ = &prometheus::BuildGauge()
                      .Name("depot_dht_hints")
                      .Help("Records queued for other replicas that missed them (hinted handoff)")
                      .Register(reg)
                      .Add({});
  hints_delivered_ = &prometheus::BuildCounter()
                          .Name("depot_dht_hints_delivered_total")
                          .Help("Hinted records delivered to the replica that missed them")
                          .Register(reg)
                          .Add({});
  hints_dropped_ = &prometheus::BuildCounter()
                        .Name("depot_dht_hints_dropped_total")
                        .Help("Hints dropped because the target's queue was full")
                        .Register(reg)
                        .Add({});
  UpdateGauges();

  replicate_pool_ = std::make_unique<NodePool>(config_.cluster_secret, kReplicateTimeoutMs);
  peer_pool_ = std::make_unique<NodePool>(config_.cluster_secret, config_.network_timeout * 1000);
  hint_pool_ = std::make_unique<NodePool>(config_.cluster_secret, kHintTimeoutMs);
  ops_ = std::make_unique<WorkerPool>(config_.threads * kWorkersPerThread);
  peer_ = std::make_unique<WorkerPool>(config_.threads * kWorkersPerThread);
  // Every op worker may wait on replicas - 1 calls at once: enough threads that none queues.
  replicate_ = std::make_unique<WorkerPool>(std::clamp(
      config_.threads * kWorkersPerThread * std::max(config_.replicas - 1, 1), 1,
      kMaxReplicateWorkers));
  hint_thread_ = std::thread([this] { HintLoop(); });

  net::ServerOptions opt;
  opt.bind_addr = config_.bind_addr;
  opt.port = config_.port;
  opt.threads = config_.threads;
  opt.max_connections = config_.max_connections;
  opt.idle_timeout_s = config_.idle_timeout;
  opt.network_timeout_s = config_.network_timeout;
  opt.cluster_secret = config_.cluster_secret;
  opt.allow_hosts = config_.allow_hosts;
  // Created now so that JOIN forwarding can be queued during the catch-up; started after it.
  timer_loop_ = std::make_unique<net::EventLoop>();
  server_ = std::make_unique<net::FrameServer>(opt);
  server_->SetObserver(rpc_metrics_.get());
  RegisterHandlers(this, server_.get());
  // Serving REPLICATE and SCAN from here on; client operations wait for the catch-up.
  DEPOT_RETURN_IF_ERROR(server_->Start());

  if (config_.advertise_address.empty()) {
    self_ = config_.bind_addr + ":" + std::to_string(server_->port());
  } else {
    self_ = config_.advertise_address;
    if (self_.size() > 2 && self_.compare(self_.size() - 2, 2, ":0") == 0) {
      self_ = self_.substr(0, self_.size() - 1) + std::to_string(server_->port());
    }
  }
  DEPOT_ASSIGN_OR_RETURN(auto persisted, store_->LoadNodes());
  std::vector<std::string> initial = persisted;
  initial.insert(initial.end(), config_.peers.begin(), config_.peers.end());
  initial.push_back(self_);
  AddMembers(initial);
  DEPOT_LOG_INFO("dht node {} listening on {}:{} (metrics port {}); {} members", self_,
                 config_.bind_addr, server_->port(), metrics_port(), Members().size());

  JoinPeers();
  uint64_t pulled = 0;
  {
    // The loop below covers the members known now; members learnt from here on are left for
    // the anti-entropy thread.
    std::lock_guard<std::mutex> a(ae_mu_);
    ae_pending_.clear();
  }
  for (const auto& node : Members()) {
    if (node == self_) continue;
    auto n = PullFrom(node, catchup_keys_);
    if (!n.ok()) {
      // A node that is down has nothing newer than what its replicas hold.
      DEPOT_LOG_WARN("catch-up from {} failed: {}", node, n.status().ToString());
      continue;
    }
    pulled += *n;
  }
  catching_up_ = false;
  UpdateGauges();
  DEPOT_LOG_INFO("caught up: {} records applied; serving ({} live keys)", pulled,
                 store_->live_keys());

  timer_loop_->RunEvery(kRefreshMs, [this] { RefreshMembership(); });
  timer_loop_->RunEvery(1000, [this] { UpdateGauges(); });
  timer_loop_->Start();
  ae_thread_ = std::thread([this] { AntiEntropyLoop(); });
  return Status::OK();
}

void DhtServer::JoinPeers() {
  for (const auto& peer : config_.peers) {
    if (peer == self_) continue;
    auto reply = peer_pool_->Call(peer, kDhtJoin, EncodeJoinRequest(self_), 256 * 1024);
    if (!reply.ok() || reply->status != 0) {
      DEPOT_LOG_WARN("join via {} failed: {}", peer,
                     reply.ok() ? "status " + std::to_string(reply->status)
                                : reply.status().ToString());
      continue;
    }
    auto nodes = DecodeNodeList(reply->body);
    if (!nodes.ok()) {
      DEPOT_LOG_WARN("join via {}: bad reply: {}", peer, nodes.status().ToString());
      continue;
    }
    AddMembers(*nodes);
  }
}

Result<uint64_t> DhtServer::PullFrom(const std::string& node, prometheus::Counter* counter) {
  auto r = ring();
  const auto& nodes = r->nodes();
  ScanRequest req;
  req.limit = kMaxScanLimit;
  req.include_tombstones = true;
  req.has_filter = true;
  req.replicas = static_cast<uint16_t>(config_.replicas);
  req.nodes = nodes;
  req.index = static_cast<uint16_t>(std::find(nodes.begin(), nodes.end(), self_) - nodes.begin());
  uint64_t applied = 0;
  for (;;) {
    DEPOT_ASSIGN_OR_RETURN(auto reply,
                           peer_pool_->Call(node, kDhtScan, EncodeScanRequest(req), kMaxScanReply));
    if (reply.status != 0) return proto::WireToStatus(reply.status, "dht scan on " + node);
    DEPOT_ASSIGN_OR_RETURN(auto page, DecodeScanReply(reply.body));
    for (const auto& [key, rec] : page.entries) {
      DEPOT_ASSIGN_OR_RETURN(bool done, store_->Apply(key, rec));
      if (done) {
        ++applied;
        counter->Increment();
      }
    }
    if (!page.more || page.entries.empty()) break;
    {
      std::lock_guard<std::mutex> a(ae_mu_);
      if (ae_stopping_) break;
    }
    req.start = page.entries.back().first;
  }
  if (applied > 0 || counter == catchup_keys_) {
    DEPOT_LOG_INFO("pulled from {}: {} records applied", node, applied);
  } else {
    DEPOT_LOG_DEBUG("pulled from {}: nothing new", node);
  }
  return applied;
}

void DhtServer::Replicate(const std::string& key, const Record& r) {
  std::vector<std::string> targets;
  for (auto& node : ring()->Preference(key, config_.replicas)) {
    if (node != self_) targets.push_back(std::move(node));
  }
  if (targets.empty()) return;
  struct Pending {
    std::mutex mu;
    std::condition_variable cv;
    size_t left = 0;
  };
  auto pending = std::make_shared<Pending>();
  pending->left = targets.size();
  auto body = std::make_shared<const std::string>(EncodeReplicateRequest({key, r}));
  for (auto& node : targets) {
    replicate_->Post([this, pending, body, node = std::move(node), key, r] {
      auto reply = replicate_pool_->Call(node, kDhtReplicate, *body, 64);
      if (!reply.ok() || reply->status != 0) {
        replicate_errors_->Increment();
        DEPOT_LOG_WARN("replicate to {} failed: {}; queued as a hint", node,
                       reply.ok() ? "status " + std::to_string(reply->status)
                                  : reply.status().ToString());
        AddHint(node, key, r);
      } else {
        NodeAnswers(node);
      }
      {
        std::lock_guard<std::mutex> l(pending->mu);
        --pending->left;
      }
      pending->cv.notify_all();
    });
  }
  std::unique_lock<std::mutex> l(pending->mu);
  if (!pending->cv.wait_for(l, std::chrono::milliseconds(kReplicateWaitMs),
                            [&] { return pending->left == 0; })) {
    DEPOT_LOG_DEBUG("replication of a record still running after {} ms; not waiting",
                    kReplicateWaitMs);
  }
}

void DhtServer::NodeAnswers(const std::string& node) {
  {
    std::lock_guard<std::mutex> l(hints_mu_);
    auto it = hints_.find(node);
    if (it == hints_.end() || it->second.records.empty() || it->second.backoff_ms == 0) return;
    // It is back: deliver its hints now rather than at the end of the back-off.
    it->second.backoff_ms = 0;
    it->second.next_try_ns = 0;
  }
  hints_cv_.notify_all();
}

size_t DhtServer::HintsQueued() {
  std::lock_guard<std::mutex> l(hints_mu_);
  return hints_total_;
}

void DhtServer::AddHint(const std::string& node, const std::string& key, const Record& r) {
  {
    std::lock_guard<std::mutex> l(hints_mu_);
    HintQueue& q = hints_[node];
    auto it = q.records.find(key);
    if (it != q.records.end()) {
      // One hint per key: the record that would win on the replica anyway.
      if (Supersedes(r, it->second)) it->second = r;
      return;
    }
    if (q.records.size() >= kMaxHintsPerNode) {
      hints_dropped_->Increment();
      if (!q.overflowed) {
        q.overflowed = true;
        DEPOT_LOG_WARN("hint queue for {} full ({} records): dropping hints; anti-entropy "
                       "repairs them", node, kMaxHintsPerNode);
      }
      return;
    }
    q.records.emplace(key, r);
    ++hints_total_;
    hints_gauge_->Set(static_cast<double>(hints_total_));
  }
  hints_cv_.notify_all();
}

void DhtServer::HintLoop() {
  std::unique_lock<std::mutex> l(hints_mu_);
  while (!hints_stopping_) {
    // The due target that waited longest; else sleep until the earliest one is due.
    int64_t now = MonotonicNanos();
    std::string due;
    int64_t due_at = INT64_MAX, next = INT64_MAX;
    for (auto& [node, q] : hints_) {
      if (q.records.empty()) continue;
      if (q.next_try_ns <= now) {
        if (q.next_try_ns < due_at) {
          due_at = q.next_try_ns;
          due = node;
        }
      } else {
        next = std::min(next, q.next_try_ns);
      }
    }
    if (due.empty()) {
      if (next == INT64_MAX) {
        hints_cv_.wait(l);
      } else {
        hints_cv_.wait_for(l, std::chrono::nanoseconds(next - now));
      }
      continue;
    }
    for (int sent = 0; sent < kHintBatch && !hints_stopping_; ++sent) {
      HintQueue& q = hints_[due];  // std::map: the reference survives the unlocked call
      if (q.records.empty()) break;
      std::string key = q.records.begin()->first;
      Record rec = q.records.begin()->second;
      l.unlock();
      auto reply = hint_pool_->Call(due, kDhtReplicate, EncodeReplicateRequest({key, rec}), 64);
      l.lock();
      // EINVAL: the node will never take this record; retrying would block its queue forever.
      bool done = reply.ok() && (reply->status == 0 || reply->status == EINVAL);
      if (!done) {
        q.backoff_ms = q.backoff_ms == 0 ? kHintMinBackoffMs
                                         : std::min(q.backoff_ms * 2, kHintMaxBackoffMs);
        q.next_try_ns = MonotonicNanos() + int64_t{q.backoff_ms} * 1000000;
        DEPOT_LOG_DEBUG("hints for {} ({} queued): {}; next try in {} ms", due, q.records.size(),
                        reply.ok() ? "status " + std::to_string(reply->status)
                                   : reply.status().ToString(),
                        q.backoff_ms);
        break;
      }
      if (reply->status == 0) {
        hints_delivered_->Increment();
      } else {
        DEPOT_LOG_WARN("hint for {} refused by {} (status {}): dropped", key, due, reply->status);
      }
      if (q.backoff_ms != 0) DEPOT_LOG_INFO("{} answers again: delivering its hints", due);
      q.backoff_ms = 0;
      q.next_try_ns = MonotonicNanos();  // after this turn, behind the other due targets
      auto it = q.records.find(key);
      // Unless a newer hint replaced it during the call.
      if (it != q.records.end() && it->second == rec) {
        q.records.erase(it);
        --hints_total_;
        hints_gauge_->Set(static_cast<double>(hints_total_));
      }
      if (q.records.empty()) {
        if (q.overflowed) DEPOT_LOG_INFO("hint queue for {} drained", due);
        q.overflowed = false;
      }
    }
  }
}

void DhtServer::AntiEntropyLoop() {
  using Clock = std::chrono::steady_clock;
  const auto interval = std::chrono::seconds(config_.anti_entropy_interval);
  auto next_round = Clock::now() + interval;
  std::unique_lock<std::mutex> l(ae_mu_);
  for (;;) {
    auto ready = [this] { return ae_stopping_ || !ae_pending_.empty(); };
    if (config_.anti_entropy_interval > 0) {
      ae_cv_.wait_until(l, next_round, ready);
    } else {
      ae_cv_.wait(l, ready);
    }
    if (ae_stopping_) return;
    bool round = config_.anti_entropy_interval > 0 && Clock::now() >= next_round;
    std::vector<std::string> from(ae_pending_.begin(), ae_pending_.end());
    ae_pending_.clear();
    // Members() takes members_mu_, which AddMembers holds while it takes ae_mu_.
    l.unlock();
    if (round) {
      from.clear();
      for (auto& m : Members()) {
        if (m != self_) from.push_back(std::move(m));
      }
    }
    uint64_t applied = 0;
    for (const auto& node : from) {
      auto n = PullFrom(node, repaired_keys_);
      if (!n.ok()) {
        DEPOT_LOG_DEBUG("anti-entropy pull from {} failed: {}", node, n.status().ToString());
        continue;
      }
      applied += *n;
    }
    if (applied > 0) {
      UpdateGauges();
      DEPOT_LOG_INFO("anti-entropy: {} records repaired from {} nodes", applied, from.size());
    }
    // The round ran on the membership of its start; restart the interval from its end.
    if (round) next_round = Clock::now() + interval;
    l.lock();
  }
}

void DhtServer::ForwardJoin(const std::string& node, const std::string& from) {
  timer_loop_->Post([this, node, from] {
    for (const auto& m : Members()) {
      if (m == self_ || m == node || m == from) continue;
      auto reply = peer_pool_->Call(m, kDhtJoin, EncodeJoinRequest(node), 256 * 1024);
      if (!reply.ok() || reply->status != 0) {
        DEPOT_LOG_WARN("forwarding join of {} to {} failed", node, m);
        continue;
      }
      auto nodes = DecodeNodeList(reply->body);
      if (nodes.ok()) AddMembers(*nodes);
    }
  });
}

void DhtServer::RefreshMembership() {
  for (const auto& m : Members()) {
    if (m == self_) continue;
    auto reply = peer_pool_->Call(m, kDhtNodes, {}, 256 * 1024);
    if (!reply.ok() || reply->status != 0) continue;
    auto nodes = DecodeNodeList(reply->body);
    if (!nodes.ok()) continue;
    AddMembers(*nodes);
    // A node that missed our JOIN (it was down) learns of us here.
    if (std::find(nodes->begin(), nodes->end(), self_) == nodes->end()) {
      auto j = peer_pool_->Call(m, kDhtJoin, EncodeJoinRequest(self_), 256 * 1024);
      if (j.ok() && j->status == 0) DEPOT_LOG_INFO("re-announced to {}", m);
    }
  }
}

void DhtServer::Stop() {
  // No new requests, then the work in flight (it posts replies to the loops, which still run),
  // then the timer, the loops and the store.
  if (server_) server_->CloseAll();
  if (ops_) ops_->Stop();
  if (replicate_) replicate_->Stop();
  if (peer_) peer_->Stop();
  {
    std::lock_guard<std::mutex> l(ae_mu_);
    ae_stopping_ = true;
  }
  ae_cv_.notify_all();
  if (ae_thread_.joinable()) ae_thread_.join();
  {
    std::lock_guard<std::mutex> l(hints_mu_);
    hints_stopping_ = true;
    if (hints_total_ > 0) DEPOT_LOG_WARN("{} hints not delivered (anti-entropy repairs them)",
                                         hints_total_);
  }
  hints_cv_.notify_all();
  if (hint_thread_.joinable()) hint_thread_.join();
  if (timer_loop_) {
    timer_loop_->Stop();
    timer_loop_->Join();
    timer_loop_.reset();
  }
  if (server_) server_->Stop();
  store_.reset();
}

}  // namespace depot::dht
