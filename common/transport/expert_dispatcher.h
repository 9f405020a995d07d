// ExpertDispatcher: the attention side of attention-FFN disaggregation. Per MoE layer it
// sends each token once to every expert worker that owns at least one of its selected
// experts (with those ids and routing weights), and adds the weighted partial sums that
// come back in placement-group order, so the result depends neither on arrival order nor
// on which replica answered.
//
// Placement is data: worker i hosts experts hosted[i]; an expert may be hosted by several
// workers (replicas), and then its tokens are spread over the live ones by token index.
//
// Failures (docs/RELIABILITY.md): a message whose worker fails (lost connection, an
// UNAVAILABLE result from a draining worker, or no answer within `failover_after` while
// another worker hosts the same experts) is sent again, in the same exchange, to a live
// worker hosting all of its experts; the failed worker is marked down and probed back by
// ExpertHealth. When no live worker hosts them, the exchange waits up to `restart_grace`
// (from the moment the worker went down) for one to come back, then fails naming it. The
// exchange is retried, never the step, so no KV position is written twice.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/config/model_config.h"
#include "common/model/expert_executor.h"
#include "common/transport/expert_channel.h"
#include "common/transport/expert_health.h"

namespace dsv3 {

struct ExpertDispatcherOptions {
  WireDType wire_dtype = WireDType::kF32;
  std::chrono::milliseconds timeout{10000};  // per MoE layer exchange (per message after a failover)
  int64_t max_tokens_per_message = 0;        // 0: derived from kMaxWireMessageBytes
  // A worker silent this long is failed over when another live worker hosts its experts.
  std::chrono::milliseconds failover_after{3000};
  // How long an exchange waits for the only owners of some experts to come back.
  std::chrono::milliseconds restart_grace{0};
  std::chrono::milliseconds probe_interval{250};
};

struct ExpertWorkerEndpoint {
  std::unique_ptr<ExpertChannel> channel;
  std::vector<int32_t> experts;  // hosted routed expert ids
  ExpertHealth::Probe probe;     // empty: a down worker is tried again after probe_interval
};

// Per-exchange statistics (for benchmarks and, later, metrics).
struct ExchangeStats {
  uint64_t exchanges = 0;
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  double seconds = 0;  // Dispatch start -> Combine end, summed
  std::vector<uint64_t> routed_tokens_per_expert;
  std::vector<uint64_t> exchanges_per_layer;   // [num_hidden_layers]
  std::vector<double> seconds_per_layer;       // [num_hidden_layers]
  double last_seconds = 0;                     // the most recent exchange
  uint64_t failovers = 0;                      // messages sent again to another worker
  uint64_t held_exchanges = 0;                 // exchanges that waited for a worker to come back
};

class ExpertDispatcher final : public RoutedExpertExecutor {
 public:
  // Fails unless every routed expert is hosted by at least one worker.
  static StatusOr<std::unique_ptr<ExpertDispatcher>> Create(const ModelConfig& cfg,
                                                            std::vector<ExpertWorkerEndpoint> workers,
                                                            const ExpertDispatcherOptions& opts);

  Status Dispatch(int64_t layer, const float* x, const RoutingResult& routing) override;
  Status Combine(float* out) override;
  const ExchangeStats& stats() const { return stats_; }
  size_t num_workers() const { return workers_.size(); }
  const ExpertHealth& health() const { return *health_; }

 private:
  // One message of the current exchange. It stays until its result is in, so it can be
  // sent again to another worker.
  struct Pending {
    uint64_t seq;
    size_t home;                 // the worker it was assigned to: its place in the sum order
    int64_t at = -1;             // the worker it was last sent to; -1: not (successfully) sent
    std::vector<int64_t> rows;   // token rows of this message, in order
    expert_pb::ExpertBatch batch;
    std::vector<size_t> hosts;   // its group's workers (replicas); every other host once a failover needs it
    bool all_hosts = false;      // hosts holds every worker hosting all of its experts
    std::optional<expert_pb::ExpertResult> result;
    std::chrono::steady_clock::time_point sent_at, first_failure;
    int sends = 0;
  };
  ExpertDispatcher(const ModelConfig& cfg, std::vector<ExpertWorkerEndpoint> workers, const ExpertDispatcherOptions& opts);
  Status Fail(size_t worker, const Status& cause);
  std::string Describe(size_t worker) const;
  void WorkerFailed(size_t worker, const Status& cause);  // marks it down, unsends its messages
  Status Place(Pending& p);                               // sends p to a live host (or waits)
  Status Collect(size_t worker);                          // receives one result of `worker`
  void FindAllHosts(Pending& p) const;                    // adds the non-replica workers hosting p's experts

  const ModelConfig& cfg_;
  std::vector<ExpertWorkerEndpoint> workers_;
  ExpertDispatcherOptions opts_;
  std::vector<std::vector<int32_t>> owners_;  // expert -> workers hosting it
  std::vector<size_t> group_;                 // worker -> its placement group (identical expert sets)
  std::vector<std::vector<size_t>> members_;  // group -> its workers (replicas of one slice)
  std::unique_ptr<ExpertHealth> health_;
  uint64_t next_seq_ = 1;
  int64_t layer_ = -1;
  int64_t tokens_ = 0;
  std::vector<Pending> pending_;  // the current exchange's messages
  // Who is up, as this exchange sees it: a snapshot at Dispatch, workers failing during
  // the exchange cleared (no lock on the healthy path).
  std::vector<bool> up_;
  bool held_ = false;
  std::chrono::steady_clock::time_point started_;
  ExchangeStats stats_;
};

}  // namespace dsv3
