// EventLoop: one libevent event_base driven by one thread (Envoy's dispatcher model).
//
// Threading: everything that touches the base (events, bufferevents, timers) runs on the loop's
// thread. Other threads reach it only through Post(), which is thread-safe. Stop() is
// thread-safe. libevent types never leave common/net.
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

struct event_base;
struct event;

namespace depot::net {

class EventLoop {
 public:
  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Runs `fn` on the loop thread, in order of posting. Safe from any thread, including the loop's.
  void Post(std::function<void()> fn);
  // Runs `fn` on the loop thread every `interval_ms` until the loop stops.
  void RunEvery(int interval_ms, std::function<void()> fn);
  // Drives the loop on the calling thread until Stop().
  void Run();
  // Starts a thread that calls Run(); Join() waits for it.
  void Start();
  void Join();
  void Stop();
  bool InLoopThread() const { return std::this_thread::get_id() == loop_thread_id_.load(); }

  event_base* base() { return base_; }

 private:
  static void OnWake(int fd, short what, void* arg);
  static void OnTimer(int fd, short what, void* arg);

  event_base* base_;
  event* wake_event_;
  std::mutex mu_;
  std::deque<std::function<void()>> pending_;  // GUARDED_BY(mu_)
  std::atomic<std::thread::id> loop_thread_id_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  struct Timer {
    event* ev;
    std::function<void()> fn;
  };
  std::deque<std::unique_ptr<Timer>> timers_;
};

// Makes libevent thread-aware; called once before the first event_base is created.
void InitLibevent();

}  // namespace depot::net
