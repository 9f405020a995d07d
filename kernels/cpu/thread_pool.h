// ThreadPool: a fixed set of workers for fork-join loops inside one forward step.
// Decode issues hundreds of short parallel regions per token, so workers spin briefly on
// a generation counter before sleeping; the caller thread takes part in every loop.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace dsv3::kernels {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);  // total including the caller
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }
  // Runs fn(i) for i in [0, n); returns when all are done. Re-entrant calls from inside a
  // task run serially on the calling thread.
  void ParallelFor(int64_t n, const std::function<void(int64_t)>& fn);

 private:
  void WorkerLoop();
  void RunTasks();

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int64_t> next_{0};
  std::atomic<int64_t> done_{0};
  std::atomic<int> active_{0};
  std::atomic<int64_t> n_{0};
  std::atomic<const std::function<void(int64_t)>*> fn_{nullptr};
  std::atomic<bool> stop_{false};
  std::mutex call_mu_;  // one ParallelFor at a time per pool
};

}  // namespace dsv3::kernels
