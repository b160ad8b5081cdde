#include "common/net/event_loop.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <signal.h>

#include <cstdlib>

namespace depot::net {

void InitLibevent() {
  static std::once_flag once;
  std::call_once(once, [] {
    evthread_use_pthreads();
    signal(SIGPIPE, SIG_IGN);
  });
}

EventLoop::EventLoop() {
  InitLibevent();
  base_ = event_base_new();
  if (base_ == nullptr) std::abort();
  wake_event_ = event_new(base_, -1, EV_PERSIST, &EventLoop::OnWake, this);
  // A persistent event with no fd is only ever activated by Post(); add it so the loop keeps
  // running even with nothing else registered.
  timeval far{86400 * 365, 0};
  event_add(wake_event_, &far);
  loop_thread_id_ = std::this_thread::get_id();
}

EventLoop::~EventLoop() {
  Stop();
  Join();
  for (auto& t : timers_) event_free(t->ev);
  event_free(wake_event_);
  event_base_free(base_);
}

void EventLoop::Post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> l(mu_);
    pending_.push_back(std::move(fn));
  }
  event_active(wake_event_, EV_READ, 0);
}

void EventLoop::OnWake(int, short, void* arg) {
  auto* self = static_cast<EventLoop*>(arg);
  std::deque<std::function<void()>> work;
  {
    std::lock_guard<std::mutex> l(self->mu_);
    work.swap(self->pending_);
  }
  for (auto& fn : work) fn();
}

void EventLoop::OnTimer(int, short, void* arg) {
  auto* t = static_cast<Timer*>(arg);
  t->fn();
}

void EventLoop::RunEvery(int interval_ms, std::function<void()> fn) {
  auto t = std::make_unique<Timer>();
  t->fn = std::move(fn);
  t->ev = event_new(base_, -1, EV_PERSIST, &EventLoop::OnTimer, t.get());
  timeval tv{interval_ms / 1000, (interval_ms % 1000) * 1000};
  event_add(t->ev, &tv);
  timers_.push_back(std::move(t));
}

void EventLoop::Run() {
  loop_thread_id_ = std::this_thread::get_id();
  if (stopping_) return;
  event_base_loop(base_, EVLOOP_NO_EXIT_ON_EMPTY);
}

void EventLoop::Start() {
  thread_ = std::thread([this] { Run(); });
}

void EventLoop::Join() {
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void EventLoop::Stop() {
  if (stopping_.exchange(true)) return;
  Post([this] { event_base_loopbreak(base_); });
}

}  // namespace depot::net
