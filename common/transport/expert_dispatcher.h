// ExpertDispatcher: the attention side of attention-FFN disaggregation. Per MoE layer it
// sends each token once to every expert worker that owns at least one of its selected
// experts (with those ids and routing weights), and adds the weighted partial sums that
// come back in worker order, so the result does not depend on arrival order.
//
// Placement is data: worker i hosts experts hosted[i]; an expert may be hosted by several
// workers (replicas), and then its tokens are spread over them by token index.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/config/model_config.h"
#include "common/model/expert_executor.h"
#include "common/transport/expert_channel.h"

namespace dsv3 {

struct ExpertDispatcherOptions {
  WireDType wire_dtype = WireDType::kF32;
  std::chrono::milliseconds timeout{10000};  // per MoE layer exchange
  int64_t max_tokens_per_message = 0;        // 0: derived from kMaxWireMessageBytes
};

struct ExpertWorkerEndpoint {
  std::unique_ptr<ExpertChannel> channel;
  std::vector<int32_t> experts;  // hosted routed expert ids
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

 private:
  struct Pending {
    uint64_t seq;
    std::vector<int64_t> rows;  // token rows of this message, in order
  };
  ExpertDispatcher(const ModelConfig& cfg, std::vector<ExpertWorkerEndpoint> workers, const ExpertDispatcherOptions& opts);
  Status Fail(size_t worker, const Status& cause);
  std::string Describe(size_t worker) const;

  const ModelConfig& cfg_;
  std::vector<ExpertWorkerEndpoint> workers_;
  ExpertDispatcherOptions opts_;
  std::vector<std::vector<int32_t>> owners_;  // expert -> workers hosting it
  uint64_t next_seq_ = 1;
  int64_t layer_ = -1;
  int64_t tokens_ = 0;
  std::vector<std::vector<Pending>> pending_;  // per worker
  Status dispatch_status_;
  std::chrono::steady_clock::time_point started_;
  ExchangeStats stats_;
};

}  // namespace dsv3
