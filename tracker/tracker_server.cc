#include "tracker/tracker_server.h"

#include "common/base/hash.h"
#include "common/base/logging.h"

namespace depot::tracker {

TrackerServer::TrackerServer(TrackerConfig config) : config_(std::move(config)) {
  Policies p;
  p.store_lookup = config_.store_lookup;
  p.store_group = config_.store_group;
  p.store_server = config_.store_server;
  p.store_path = config_.store_path;
  p.storage_timeout = config_.storage_timeout;
  cluster_ = std::make_unique<ClusterMap>(p);
}

TrackerServer::~TrackerServer() { Stop(); }

Status TrackerServer::Start() {
  DEPOT_ASSIGN_OR_RETURN(store_, StateStore::Open(config_.base_path + "/data"));
  DEPOT_ASSIGN_OR_RETURN(auto members, store_->LoadMembers());
  for (const auto& m : members) cluster_->Restore(m);
  DEPOT_LOG_INFO("restored {} storage members from state", members.size());
  cluster_->Started(UnixSeconds());

  metrics_ = std::make_unique<metrics::MetricsServer>();
  if (config_.metrics_port >= 0) {
    DEPOT_RETURN_IF_ERROR(metrics_->Start(config_.bind_addr, config_.metrics_port));
  }
  rpc_metrics_ = std::make_unique<metrics::RpcMetrics>(metrics_->registry(), "tracker");

  net::ServerOptions opt;
  opt.bind_addr = config_.bind_addr;
  opt.port = config_.port;
  opt.threads = config_.work_threads;
  opt.max_connections = config_.max_connections;
  opt.idle_timeout_s = config_.idle_timeout;
  opt.network_timeout_s = config_.network_timeout;
  opt.cluster_secret = config_.cluster_secret;
  opt.allow_hosts = config_.allow_hosts;
  server_ = std::make_unique<net::FrameServer>(opt);
  server_->SetObserver(rpc_metrics_.get());
  RegisterClientQueries(this, server_.get());
  RegisterMonitor(this, server_.get());
  RegisterStorageChannel(this, server_.get());
  timer_loop_ = std::make_unique<net::EventLoop>();
  timer_loop_->RunEvery(1000, [this] { cluster_->ExpireStale(UnixSeconds()); });
  timer_loop_->Start();
  DEPOT_RETURN_IF_ERROR(server_->Start());
  DEPOT_LOG_INFO("tracker listening on {}:{} (metrics port {})", config_.bind_addr,
                 server_->port(), metrics_port());
  return Status::OK();
}

void TrackerServer::PersistMember(const proto::JoinInfo& info) {
  timer_loop_->Post([this, info] {
    Status s = store_->PutMember(info);
    if (!s.ok()) DEPOT_LOG_ERROR("cannot persist member {}:{}: {}", info.ip, info.port, s.ToString());
  });
}

void TrackerServer::Stop() {
  // Handlers first (they post to the timer loop), then the timer loop (it runs what was posted
  // before it stops), then the state store it writes to.
  if (server_) server_->Stop();
  if (timer_loop_) {
    timer_loop_->Stop();
    timer_loop_->Join();
    timer_loop_.reset();
  }
  store_.reset();
}

}  // namespace depot::tracker
