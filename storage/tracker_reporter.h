// TrackerReporter: keeps the storage joined to every configured tracker. One thread per tracker:
// connect, cluster-secret handshake, join, then a heartbeat every heartbeat_interval with free
// space and counters. A tracker that is down is retried with back-off, so a storage starts while
// some trackers are down and joins them when they come up.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace depot::storage {

class StorageServer;

class TrackerReporter {
 public:
  explicit TrackerReporter(StorageServer* server);
  ~TrackerReporter();
  void Start();
  void Stop();
  // Wakes every tracker thread to heartbeat now.
  void Kick();
  // Trackers this storage is currently joined to.
  int joined_count() const { return joined_.load(); }

 private:
  void Run(std::string host, int port);
  bool SleepFor(int ms);  // false when stopping

  StorageServer* server_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // GUARDED_BY(mu_)
  uint64_t kicks_ = 0;  // GUARDED_BY(mu_)
  std::atomic<int> joined_{0};
};

}  // namespace depot::storage
