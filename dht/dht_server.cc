#include "dht/dht_server.h"

#include <algorithm>
#include <cerrno>

#include "common/base/hash.h"
#include "common/base/logging.h"

namespace depot::dht {
namespace {

// Deadline of a REPLICATE call. It sits on the write path: it must stay well under the clients'
// per-call deadline (DhtClientOptions::timeout_ms, 1 s by default), or a client would give up on
// the coordinator and retry the write on the next replica.
constexpr int kReplicateTimeoutMs = 400;
constexpr int kWorkersPerThread = 4;
constexpr int kRefreshMs = 2000;

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
  }
  return added;
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
  UpdateGauges();

  replicate_pool_ = std::make_unique<NodePool>(config_.cluster_secret, kReplicateTimeoutMs);
  peer_pool_ = std::make_unique<NodePool>(config_.cluster_secret, config_.network_timeout * 1000);
  ops_ = std::make_unique<WorkerPool>(config_.threads * kWorkersPerThread);
  peer_ = std::make_unique<WorkerPool>(config_.threads * kWorkersPerThread);

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
  for (const auto& node : Members()) {
    if (node == self_) continue;
    auto n = PullFrom(node);
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

Result<uint64_t> DhtServer::PullFrom(const std::string& node) {
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
        catchup_keys_->Increment();
      }
    }
    if (!page.more || page.entries.empty()) break;
    req.start = page.entries.back().first;
  }
  DEPOT_LOG_INFO("caught up from {}: {} records applied", node, applied);
  return applied;
}

void DhtServer::Replicate(const std::string& key, const Record& r) {
  auto ring_now = ring();
  std::string body;
  for (const auto& node : ring_now->Preference(key, config_.replicas)) {
    if (node == self_) continue;
    if (body.empty()) body = EncodeReplicateRequest({key, r});
    auto reply = replicate_pool_->Call(node, kDhtReplicate, body, 64);
    if (!reply.ok() || reply->status != 0) {
      replicate_errors_->Increment();
      DEPOT_LOG_WARN("replicate to {} failed: {}", node,
                     reply.ok() ? "status " + std::to_string(reply->status)
                                : reply.status().ToString());
    }
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
  if (peer_) peer_->Stop();
  if (timer_loop_) {
    timer_loop_->Stop();
    timer_loop_->Join();
    timer_loop_.reset();
  }
  if (server_) server_->Stop();
  store_.reset();
}

}  // namespace depot::dht
