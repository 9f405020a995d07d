// Router: which attention worker serves a request.
//
// Worker sets come from flags: colocated (`--workers`, role "both") or disaggregated
// (`--prefill-workers` + `--decode-workers`). A background thread polls every worker's
// GetLoad every poll interval (Describe first, once per (re)connection); a worker that does
// not answer is marked down and comes back when it answers again. Pick() chooses the least
// loaded up worker of a role, preferring one whose load report lists the chained hash of
// the prompt's first block (prefix-cache affinity) unless it is much busier.
//
// Thread-safe. Leases count the gateway's own outstanding calls per worker, so a burst
// between two polls is spread instead of piling onto the worker that looked idlest.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "services/gateway/worker_client.h"

namespace dsv3::gateway {

class GatewayMetrics;

enum class WorkerRole { kBoth, kPrefill, kDecode };
const char* WorkerRoleName(WorkerRole r);

struct RouterOptions {
  std::vector<std::string> workers;          // colocated
  std::vector<std::string> prefill_workers;  // disaggregated
  std::vector<std::string> decode_workers;
  std::chrono::milliseconds poll_interval{200};
  std::chrono::milliseconds rpc_timeout{1000};
};

// A worker chosen for one call; releases the gateway-side in-flight count when destroyed.
class WorkerLease {
 public:
  WorkerLease(std::shared_ptr<WorkerClient> client, std::shared_ptr<std::atomic<int>> inflight)
      : client_(std::move(client)), inflight_(std::move(inflight)) {
    ++*inflight_;
  }
  ~WorkerLease() { --*inflight_; }
  WorkerLease(const WorkerLease&) = delete;
  WorkerLease& operator=(const WorkerLease&) = delete;
  WorkerClient& client() const { return *client_; }

 private:
  std::shared_ptr<WorkerClient> client_;
  std::shared_ptr<std::atomic<int>> inflight_;
};

struct WorkerSnapshot {
  std::string address;
  WorkerRole role;
  bool up = false;
  std::string last_error;
  std::optional<attn::WorkerInfo> info;
  std::optional<attn::LoadReport> load;
  int gateway_inflight = 0;
};

class Router {
 public:
  Router(RouterOptions options, GatewayMetrics* metrics);  // metrics may be null
  ~Router();
  Router(const Router&) = delete;

  // Starts the poll thread (the first poll round runs before Start returns when
  // `wait_first_poll`). Stop() joins it; also called by the destructor.
  void Start(bool wait_first_poll = false);
  void Stop();

  bool disaggregated() const { return !decode_.empty(); }
  // Every needed role has at least one up worker.
  bool Ready() const;
  // Describe of an up worker (model facts: max_context, vocab, fingerprint, eos).
  std::optional<attn::WorkerInfo> ModelInfo() const;

  // Least-loaded up worker of `role` whose address is not in `exclude`; null when none.
  // `prompt` feeds prefix affinity (may be empty).
  std::unique_ptr<WorkerLease> Pick(WorkerRole role, const std::vector<int32_t>& prompt,
                                    const std::set<std::string>& exclude);
  // A call found the worker unreachable: mark it down until the next successful poll.
  void ReportUnreachable(const std::string& address, const std::string& why);

  std::vector<WorkerSnapshot> Snapshot() const;
  // Runs one poll round synchronously (tests, startup).
  void PollOnce();

  // The chained hash of the first full block of `prompt`, as the worker computes it, when
  // the prompt is long enough for the worker to have cached that block.
  static std::optional<uint64_t> FirstBlockHash(const std::vector<int32_t>& prompt, int32_t block_size);

 private:
  struct Entry {
    std::shared_ptr<WorkerClient> client;
    WorkerRole role;
    std::shared_ptr<std::atomic<int>> inflight = std::make_shared<std::atomic<int>>(0);
    // Guarded by Router::mu_.
    bool up = false;
    bool described = false;
    std::string last_error;
    attn::WorkerInfo info;
    attn::LoadReport load;
  };
  void PollLoop();
  void PollEntry(size_t i);

  GatewayMetrics* metrics_;
  RouterOptions options_;
  std::vector<Entry> entries_;
  std::vector<size_t> both_, prefill_, decode_;  // indices into entries_
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread poller_;
};

}  // namespace dsv3::gateway
