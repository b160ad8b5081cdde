// Prometheus metrics for every daemon: a registry, an HTTP exposer serving /metrics (and /healthz),
// and RpcMetrics, the frame-server observer that counts requests by command and status, bytes in
// and out, latency and connections. Metric names are listed in doc/metrics.md.
// Thread-safe: metric updates may come from any thread.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "common/base/status.h"
#include "common/net/frame_server.h"

namespace prometheus {
class Exposer;
}

namespace depot::metrics {

class MetricsServer {
 public:
  MetricsServer();
  ~MetricsServer();
  // Serves /metrics on bind_addr:port (port 0: any free port). IOError when it cannot bind.
  Status Start(const std::string& bind_addr, int port);
  int port() const { return port_; }
  prometheus::Registry& registry() { return *registry_; }
  std::shared_ptr<prometheus::Registry> shared_registry() { return registry_; }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<prometheus::Registry> health_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
};

// Counts the requests of one daemon (`daemon` label: tracker, storage).
class RpcMetrics : public net::ServerObserver {
 public:
  RpcMetrics(prometheus::Registry& registry, const std::string& daemon);
  void OnRequestDone(uint8_t cmd, uint8_t status, double seconds, uint64_t bytes_in,
                     uint64_t bytes_out) override;
  void OnConnectionCountChanged(int64_t count) override;

 private:
  prometheus::Counter* RequestCounter(uint8_t cmd, uint8_t status);
  prometheus::Histogram* Latency(uint8_t cmd);

  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& latency_;
  prometheus::Counter& bytes_in_;
  prometheus::Counter& bytes_out_;
  prometheus::Gauge& connections_;
  std::mutex mu_;
  std::array<std::atomic<prometheus::Counter*>, 256 * 3> counters_{};  // [cmd][0, 2, 22]
  std::array<std::atomic<prometheus::Histogram*>, 256> histograms_{};
};

}  // namespace depot::metrics
