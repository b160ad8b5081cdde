// DiskExecutor: a small pool of threads that run blocking disk work (FastDFS's storage_dio).
// Each store path has a writer pool and a reader pool, so that no network loop ever waits on a
// disk. Submit() is thread-safe; tasks run in FIFO order per pool.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace depot::storage {

class DiskExecutor {
 public:
  DiskExecutor(std::string name, int threads);
  ~DiskExecutor();  // runs the queued tasks, then joins

  void Submit(std::function<void()> task);
  size_t queued() const;

 private:
  void Loop();

  std::string name_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;  // GUARDED_BY(mu_)
  bool stop_ = false;                        // GUARDED_BY(mu_)
  std::vector<std::thread> threads_;
};

}  // namespace depot::storage
