// ExpertHealth: which expert workers are down, and a background prober that brings them
// back. The dispatcher marks a worker down when an exchange with it fails (connection
// lost, hung past the failover deadline, draining); from then on no token is assigned to
// it. The prober calls the worker's probe (Describe: same model, not draining) every
// interval and marks it up once it answers, so traffic returns after a restart without
// the dispatcher ever waiting on a dead address. No probing while every worker is up.
//
// Thread-safety: every method may be called from any thread; the probes run on the
// prober's own thread, never on the caller's.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "common/transport/expert_channel.h"

namespace dsv3 {

class ExpertHealth {
 public:
  // OK when the worker answers and may take traffic again.
  using Probe = std::function<Status(Deadline)>;

  // `names` (one per worker) go into the one stderr line logged per transition.
  ExpertHealth(std::vector<Probe> probes, std::vector<std::string> names, std::chrono::milliseconds interval,
               std::chrono::milliseconds probe_timeout);
  ~ExpertHealth();  // stops and joins the prober
  ExpertHealth(const ExpertHealth&) = delete;
  ExpertHealth& operator=(const ExpertHealth&) = delete;

  size_t size() const { return probes_.size(); }
  bool up(size_t w) const;
  std::vector<bool> Snapshot() const;  // one consistent view for a whole exchange
  size_t num_down() const;
  void MarkDown(size_t w, const Status& why);
  // The failure that took `w` down (OK when it is up) and since when.
  Status last_failure(size_t w) const;
  std::chrono::steady_clock::time_point down_since(size_t w) const;
  // Waits until one of `any_of` is up or the deadline passes; that worker, or -1.
  int WaitUp(const std::vector<size_t>& any_of, Deadline deadline);
  uint64_t recoveries() const;  // how many times a worker came back (metrics, tests)

 private:
  struct State {
    bool up = true;
    Status why;
    std::chrono::steady_clock::time_point since;
  };
  void Loop();

  const std::vector<Probe> probes_;
  const std::vector<std::string> names_;
  const std::chrono::milliseconds interval_, probe_timeout_;
  mutable std::mutex mu_;
  std::condition_variable cv_;  // MarkDown wakes the prober; recoveries wake WaitUp
  std::vector<State> state_;
  uint64_t recoveries_ = 0;
  bool stop_ = false;
  std::thread prober_;
};

}  // namespace dsv3
