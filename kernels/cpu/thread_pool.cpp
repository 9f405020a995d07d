#include "kernels/cpu/thread_pool.h"

#include <immintrin.h>

namespace dsv3::kernels {
namespace {
// True while this thread executes a pool task: nested loops then run inline.
thread_local bool t_in_pool_task = false;
}  // namespace

ThreadPool::ThreadPool(int threads) {
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_.store(true);
    generation_.fetch_add(1, std::memory_order_release);
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::RunTasks() {
  t_in_pool_task = true;
  for (;;) {
    // acq_rel pairs with the caller's release store of next_ = 0 after it wrote fn_/n_.
    int64_t i = next_.fetch_add(1, std::memory_order_acq_rel);
    if (i >= n_.load(std::memory_order_relaxed)) break;
    (*fn_.load(std::memory_order_relaxed))(i);
    done_.fetch_add(1, std::memory_order_release);
  }
  t_in_pool_task = false;
}

void ThreadPool::WorkerLoop() {
  uint64_t seen = 0;
  for (;;) {
    // Spin for a short while: most parallel regions follow each other within microseconds.
    uint64_t g = generation_.load(std::memory_order_acquire);
    for (int spin = 0; g == seen && spin < 20000; ++spin) {
      _mm_pause();
      g = generation_.load(std::memory_order_acquire);
    }
    if (g == seen) {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      g = generation_.load(std::memory_order_acquire);
    }
    seen = g;
    if (stop_.load()) return;
    active_.fetch_add(1, std::memory_order_acq_rel);
    RunTasks();
    active_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::ParallelFor(int64_t n, const std::function<void(int64_t)>& fn) {
  if (n <= 0) return;
  if (workers_.empty() || n == 1 || t_in_pool_task) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::lock_guard<std::mutex> call(call_mu_);
  // Workers still leaving the previous loop must not see the new task state half-written.
  while (active_.load(std::memory_order_acquire) != 0) _mm_pause();
  // Late workers may still claim indices: park next_ far past any n while the new loop's
  // state is written, then publish it with a release store.
  next_.store(INT64_MAX / 2, std::memory_order_relaxed);
  fn_.store(&fn, std::memory_order_relaxed);
  n_.store(n, std::memory_order_relaxed);
  done_.store(0, std::memory_order_relaxed);
  next_.store(0, std::memory_order_release);
  {
    std::lock_guard<std::mutex> lk(mu_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  cv_.notify_all();
  RunTasks();
  while (done_.load(std::memory_order_acquire) != n) _mm_pause();
}

}  // namespace dsv3::kernels
