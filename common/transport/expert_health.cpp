#include "common/transport/expert_health.h"

#include <algorithm>
#include <cstdio>

namespace dsv3 {

ExpertHealth::ExpertHealth(std::vector<Probe> probes, std::vector<std::string> names, std::chrono::milliseconds interval,
                           std::chrono::milliseconds probe_timeout)
    : probes_(std::move(probes)),
      names_(std::move(names)),
      interval_(interval),
      probe_timeout_(probe_timeout),
      state_(probes_.size()) {
  prober_ = std::thread([this] { Loop(); });
}

ExpertHealth::~ExpertHealth() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  prober_.join();
}

bool ExpertHealth::up(size_t w) const {
  std::lock_guard<std::mutex> l(mu_);
  return state_[w].up;
}

std::vector<bool> ExpertHealth::Snapshot() const {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<bool> v(state_.size());
  for (size_t w = 0; w < state_.size(); ++w) v[w] = state_[w].up;
  return v;
}

size_t ExpertHealth::num_down() const {
  std::lock_guard<std::mutex> l(mu_);
  return static_cast<size_t>(std::count_if(state_.begin(), state_.end(), [](const State& s) { return !s.up; }));
}

void ExpertHealth::MarkDown(size_t w, const Status& why) {
  {
    std::lock_guard<std::mutex> l(mu_);
    State& s = state_[w];
    if (s.up) {
      s.since = std::chrono::steady_clock::now();
      std::fprintf(stderr, "expert worker %s marked down (%s); probing it\n", w < names_.size() ? names_[w].c_str() : "?",
                   std::string(why.message()).c_str());
    }
    s.up = false;
    s.why = why;
  }
  cv_.notify_all();
}

Status ExpertHealth::last_failure(size_t w) const {
  std::lock_guard<std::mutex> l(mu_);
  return state_[w].up ? Status() : state_[w].why;
}

std::chrono::steady_clock::time_point ExpertHealth::down_since(size_t w) const {
  std::lock_guard<std::mutex> l(mu_);
  return state_[w].since;
}

int ExpertHealth::WaitUp(const std::vector<size_t>& any_of, Deadline deadline) {
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    for (size_t w : any_of) {
      if (state_[w].up) return static_cast<int>(w);
    }
    if (stop_ || cv_.wait_until(l, deadline) == std::cv_status::timeout) {
      for (size_t w : any_of) {
        if (state_[w].up) return static_cast<int>(w);
      }
      return -1;
    }
  }
}

uint64_t ExpertHealth::recoveries() const {
  std::lock_guard<std::mutex> l(mu_);
  return recoveries_;
}

void ExpertHealth::Loop() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    std::vector<size_t> down;
    for (size_t w = 0; w < state_.size(); ++w) {
      if (!state_[w].up) down.push_back(w);
    }
    if (down.empty()) {
      cv_.wait(l);  // nothing to probe until a MarkDown
      continue;
    }
    // Probe outside the lock: a hung worker holds its probe up to probe_timeout_.
    l.unlock();
    std::vector<size_t> back;
    for (size_t w : down) {
      const Status st = probes_[w] ? probes_[w](std::chrono::steady_clock::now() + probe_timeout_) : Status();
      if (st.ok()) back.push_back(w);
    }
    l.lock();
    for (size_t w : back) {
      std::fprintf(stderr, "expert worker %s is back after %.1f s\n", w < names_.size() ? names_[w].c_str() : "?",
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - state_[w].since).count());
      state_[w].up = true;
      state_[w].why = Status();
      ++recoveries_;
    }
    if (!back.empty()) cv_.notify_all();
    cv_.wait_for(l, interval_, [&] { return stop_; });
  }
}

}  // namespace dsv3
