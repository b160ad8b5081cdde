// `depot bench`: N connections each doing what a real client does (a tracker query, then the
// storage operation, on pooled connections) for a fixed time; prints ops/s, MB/s and latency
// percentiles. Loads are bounded by --duration and, for delete, by --files.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <thread>

#include "client/cli/cli.h"
#include "common/base/hash.h"

namespace depot::cli {
namespace {

struct WorkerResult {
  std::vector<uint32_t> lat_us;
  uint64_t errors = 0;
  std::string first_error;
};

double Percentile(std::vector<uint32_t>& v, double p) {
  if (v.empty()) return 0;
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(i), v.end());
  return v[i] / 1000.0;
}

long PeakRssKb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return 0;
}

// Uploads `n` files of `payload` with `conns` threads; returns their IDs.
std::vector<std::string> Prepare(Client& c, const BenchOptions& b, const std::string& payload,
                                 int n, Status* err) {
  std::vector<std::string> ids;
  std::mutex mu;
  std::atomic<int> next{0};
  std::vector<std::thread> threads;
  UploadOptions o;
  o.group = b.group;
  o.ext = "bin";
  // Preparing is not measured: use at least 8 connections for it.
  for (int t = 0; t < std::max(8, b.connections); ++t) {
    threads.emplace_back([&] {
      while (next++ < n) {
        auto id = c.UploadBuffer(payload, o);
        std::lock_guard<std::mutex> l(mu);
        if (id.ok()) {
          ids.push_back(*id);
        } else if (err->ok()) {
          *err = id.status();
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  return ids;
}

}  // namespace

int RunBench(const GlobalOptions& g, const BenchOptions& b) {
  auto client = MakeClient(g);
  if (!client.ok()) return Fail(g, client.status());
  Client& c = **client;
  std::string payload(b.size, '\0');
  for (size_t i = 0; i < payload.size(); i += 8) {
    uint64_t r = RandomU64();
    std::memcpy(payload.data() + i, &r, std::min<size_t>(8, payload.size() - i));
  }
  std::vector<std::string> ids;
  if (b.op != "upload") {
    Status err;
    ids = Prepare(c, b, payload, b.files, &err);
    if (ids.empty()) return Fail(g, err.ok() ? Status::Internal("no file prepared") : err);
  }
  std::vector<WorkerResult> results(static_cast<size_t>(b.connections));
  std::atomic<size_t> next_delete{0};
  int64_t start = MonotonicNanos();
  int64_t deadline = start + static_cast<int64_t>(b.duration * 1e9);
  std::vector<std::thread> threads;
  for (int t = 0; t < b.connections; ++t) {
    threads.emplace_back([&, t] {
      WorkerResult& r = results[static_cast<size_t>(t)];
      UploadOptions o;
      o.group = b.group;
      o.ext = "bin";
      uint64_t seed = RandomU64();
      std::string mine;  // --unique: this thread's copy, made new before each upload
      if (b.unique) mine = payload;
      uint64_t nonce = RandomU64(), counter = 0;
      while (MonotonicNanos() < deadline) {
        if (b.unique) {
          ++counter;
          std::memcpy(mine.data(), &nonce, std::min<size_t>(8, mine.size()));
          if (mine.size() > 8) std::memcpy(mine.data() + 8, &counter, std::min<size_t>(8, mine.size() - 8));
        }
        int64_t t0 = MonotonicNanos();
        Status s;
        if (b.op == "upload") {
          s = c.UploadBuffer(b.unique ? mine : payload, o).status();
        } else if (b.op == "download") {
          seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
          const std::string& id = ids[(seed >> 33) % ids.size()];
          auto data = c.DownloadToBuffer(id);
          s = data.ok() ? (data->size() == b.size ? Status::OK()
                                                  : Status::Corruption("short download"))
                        : data.status();
        } else {
          size_t i = next_delete++;
          if (i >= ids.size()) break;
          s = c.Delete(ids[i]);
        }
        int64_t t1 = MonotonicNanos();
        if (s.ok()) {
          r.lat_us.push_back(static_cast<uint32_t>((t1 - t0) / 1000));
        } else {
          if (r.errors++ == 0) r.first_error = s.ToString();
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  double secs = static_cast<double>(MonotonicNanos() - start) / 1e9;
  std::vector<uint32_t> all;
  uint64_t errors = 0;
  std::string first_error;
  for (auto& r : results) {
    all.insert(all.end(), r.lat_us.begin(), r.lat_us.end());
    errors += r.errors;
    if (first_error.empty()) first_error = r.first_error;
  }
  double ops = static_cast<double>(all.size()) / secs;
  double mbps = ops * static_cast<double>(b.size) / 1e6;
  double p50 = Percentile(all, 0.50), p99 = Percentile(all, 0.99), p999 = Percentile(all, 0.999);
  if (g.json) {
    PrintJson({{"op", b.op},
               {"size", b.size},
               {"connections", b.connections},
               {"seconds", secs},
               {"ops", all.size()},
               {"errors", errors},
               {"ops_per_s", ops},
               {"mb_per_s", mbps},
               {"p50_ms", p50},
               {"p99_ms", p99},
               {"p999_ms", p999},
               {"unique", b.unique},
               {"client_peak_rss_kb", PeakRssKb()}});
  } else {
    std::printf(
        "%-8s size=%-8llu conns=%-3d ops=%-8zu errors=%-4llu %10.0f ops/s %9.1f MB/s  "
        "p50 %.3f ms  p99 %.3f ms  p99.9 %.3f ms\n",
        b.op.c_str(), static_cast<unsigned long long>(b.size), b.connections, all.size(),
        static_cast<unsigned long long>(errors), ops, mbps, p50, p99, p999);
  }
  if (errors > 0) std::fprintf(stderr, "depot bench: %llu errors, first: %s\n",
                               static_cast<unsigned long long>(errors), first_error.c_str());
  return errors > 0 && all.empty() ? 1 : 0;
}

}  // namespace depot::cli
