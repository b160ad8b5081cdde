#include "common/metrics/metrics.h"

#include <prometheus/exposer.h>

namespace depot::metrics {

MetricsServer::MetricsServer() : registry_(std::make_shared<prometheus::Registry>()) {}
MetricsServer::~MetricsServer() = default;

Status MetricsServer::Start(const std::string& bind_addr, int port) {
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(bind_addr + ":" + std::to_string(port));
  } catch (const std::exception& e) {
    return Status::IOError("metrics: cannot listen on " + bind_addr + ":" + std::to_string(port),
                           e.what());
  }
  exposer_->RegisterCollectable(registry_);
  // Readiness: an empty collectable answers GET /healthz with 200.
  health_ = std::make_shared<prometheus::Registry>();
  exposer_->RegisterCollectable(health_, "/healthz");
  auto ports = exposer_->GetListeningPorts();
  port_ = ports.empty() ? port : ports.front();
  return Status::OK();
}

RpcMetrics::RpcMetrics(prometheus::Registry& registry, const std::string& daemon)
    : requests_(prometheus::BuildCounter()
                    .Name("depot_requests_total")
                    .Help("Requests served, by command code and reply status")
                    .Labels({{"daemon", daemon}})
                    .Register(registry)),
      latency_(prometheus::BuildHistogram()
                   .Name("depot_request_duration_seconds")
                   .Help("Time from request header to reply, by command code")
                   .Labels({{"daemon", daemon}})
                   .Register(registry)),
      bytes_in_(prometheus::BuildCounter()
                    .Name("depot_bytes_received_total")
                    .Help("Bytes received in requests (headers and bodies)")
                    .Labels({{"daemon", daemon}})
                    .Register(registry)
                    .Add({})),
      bytes_out_(prometheus::BuildCounter()
                     .Name("depot_bytes_sent_total")
                     .Help("Bytes sent in replies (headers and bodies)")
                     .Labels({{"daemon", daemon}})
                     .Register(registry)
                     .Add({})),
      connections_(prometheus::BuildGauge()
                       .Name("depot_connections")
                       .Help("Open client connections")
                       .Labels({{"daemon", daemon}})
                       .Register(registry)
                       .Add({})) {}

prometheus::Counter* RpcMetrics::RequestCounter(uint8_t cmd, uint8_t status) {
  // The common statuses (0, 2 ENOENT, 22 EINVAL) are cached per command so that the hot path
  // takes no lock; any other status goes through the family (a map lookup under its lock).
  int cls = status == 0 ? 0 : status == 2 ? 1 : status == 22 ? 2 : -1;
  if (cls >= 0) {
    prometheus::Counter* c = counters_[cmd * 3 + cls].load(std::memory_order_acquire);
    if (c != nullptr) return c;
  }
  std::lock_guard<std::mutex> l(mu_);
  prometheus::Counter* c =
      &requests_.Add({{"cmd", std::to_string(cmd)}, {"status", std::to_string(status)}});
  if (cls >= 0) counters_[cmd * 3 + cls].store(c, std::memory_order_release);
  return c;
}

prometheus::Histogram* RpcMetrics::Latency(uint8_t cmd) {
  auto& slot = histograms_[cmd];
  prometheus::Histogram* h = slot.load(std::memory_order_acquire);
  if (h != nullptr) return h;
  std::lock_guard<std::mutex> l(mu_);
  h = &latency_.Add({{"cmd", std::to_string(cmd)}},
                    prometheus::Histogram::BucketBoundaries{0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                            0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                            0.5, 1, 2.5, 5, 10});
  slot.store(h, std::memory_order_release);
  return h;
}

void RpcMetrics::OnRequestDone(uint8_t cmd, uint8_t status, double seconds, uint64_t bytes_in,
                               uint64_t bytes_out) {
  RequestCounter(cmd, status)->Increment();
  Latency(cmd)->Observe(seconds);
  bytes_in_.Increment(static_cast<double>(bytes_in));
  bytes_out_.Increment(static_cast<double>(bytes_out));
}

void RpcMetrics::OnConnectionCountChanged(int64_t count) {
  connections_.Set(static_cast<double>(count));
}

}  // namespace depot::metrics
