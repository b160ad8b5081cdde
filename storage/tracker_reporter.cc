#include "storage/tracker_reporter.h"

#include "common/base/conf.h"
#include "common/base/daemon.h"
#include "common/base/logging.h"
#include "common/net/blocking_conn.h"
#include "common/proto/internal.h"
#include "storage/replicator.h"
#include "storage/storage_server.h"

namespace depot::storage {

TrackerReporter::TrackerReporter(StorageServer* server) : server_(server) {}

TrackerReporter::~TrackerReporter() { Stop(); }

void TrackerReporter::Start() {
  for (const auto& t : server_->config().tracker_servers) {
    std::string host;
    int port = 0;
    if (!ParseHostPort(t, &host, &port).ok()) continue;  // validated by the config loader
    threads_.emplace_back([this, host, port] { Run(host, port); });
  }
}

void TrackerReporter::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

bool TrackerReporter::SleepFor(int ms) {
  std::unique_lock<std::mutex> l(mu_);
  uint64_t k = kicks_;
  cv_.wait_for(l, std::chrono::milliseconds(ms), [&] { return stop_ || kicks_ != k; });
  return !stop_;
}

void TrackerReporter::Kick() {
  {
    std::lock_guard<std::mutex> l(mu_);
    ++kicks_;
  }
  cv_.notify_all();
}

void TrackerReporter::Run(std::string host, int port) {
  const StorageConfig& cfg = server_->config();
  std::string addr = host + ":" + std::to_string(port);
  int backoff_ms = 200;
  bool warned = false;
  for (;;) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stop_) return;
    }
    auto conn = net::BlockingConn::Connect(host, port, 3000);
    Status s = conn.ok() ? Status::OK() : conn.status();
    std::string id;
    if (s.ok()) {
      (*conn)->set_timeout_ms(10000);
      s = (*conn)->Authenticate(cfg.cluster_secret);
    }
    if (s.ok()) {
      proto::JoinInfo j;
      j.group = cfg.group_name;
      j.ip = cfg.advertise_address;
      j.port = server_->port();
      j.http_port = cfg.http_advertise_port > 0 ? cfg.http_advertise_port : server_->http_port();
      j.store_path_count = static_cast<int>(server_->paths().size());
      j.subdir_count = 256;
      j.upload_priority = cfg.upload_priority;
      j.version = kDepotVersion;
      j.join_time = server_->join_time();
      j.up_time = server_->up_time();
      auto r = (*conn)->Call(proto::kDepotStorageJoin, proto::EncodeJoin(j), 4096);
      if (!r.ok()) {
        s = r.status();
      } else if (r->status != 0) {
        s = proto::WireToStatus(r->status, "join " + addr);
      } else {
        auto jid = proto::DecodeJoinReply(r->body);
        s = jid.ok() ? Status::OK() : jid.status();
        if (jid.ok()) id = *jid;
      }
    }
    if (!s.ok()) {
      if (!warned) DEPOT_LOG_WARN("tracker {}: {} (retrying)", addr, s.ToString());
      warned = true;
      if (!SleepFor(backoff_ms)) return;
      backoff_ms = std::min(backoff_ms * 2, 5000);
      continue;
    }
    if (cfg.advertise_address.empty()) {
      auto ip = proto::ParseIpv4(id.substr(0, id.rfind(':')));
      if (ip.ok()) server_->set_source_ip(*ip);
    }
    DEPOT_LOG_INFO("joined tracker {} as {}", addr, id);
    warned = false;
    backoff_ms = 200;
    joined_++;
    // Heartbeat at once (the tracker marks us ACTIVE on the first one), then every interval.
    for (;;) {
      proto::HeartbeatInfo hb;
      hb.id = id;
      for (const auto& p : server_->paths()) {
        hb.paths.push_back({p->total_bytes() >> 20, p->free_bytes() >> 20});
        hb.reserved_mb = std::max<int64_t>(hb.reserved_mb, server_->ReservedBytes(*p) >> 20);
      }
      hb.conn_current = static_cast<uint32_t>(server_->connection_count());
      hb.conn_alloc = static_cast<uint32_t>(cfg.max_connections);
      server_->Snapshot(hb.counters);
      hb.last_source_update = server_->last_source_update();
      server_->replicator().FillHeartbeat(&hb);
      auto r = (*conn)->Call(proto::kDepotStorageHeartbeat, proto::EncodeHeartbeat(hb), 1 << 20);
      if (!r.ok() || r->status != 0) {
        DEPOT_LOG_WARN("tracker {}: heartbeat failed: {}; joining again", addr,
                       r.ok() ? std::to_string(r->status) : r.status().ToString());
        break;
      }
      auto peers = proto::DecodeHeartbeatReply(r->body);
      if (peers.ok()) server_->replicator().UpdatePeers(addr, id, *peers);
      if (!SleepFor(cfg.heartbeat_interval * 1000)) {
        joined_--;
        return;
      }
    }
    joined_--;
  }
}

}  // namespace depot::storage
