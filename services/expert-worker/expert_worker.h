// ExpertWorker: the transport-independent core of an expert worker process. It owns one
// slice of the routed experts (for every MoE layer), validates each ExpertBatch and
// returns the weighted partial sums. Transports (gRPC, UCX) call Handle().
#pragma once

#include <atomic>
#include <functional>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/checkpoint/checkpoint.h"
#include "common/model/model_weights.h"
#include "common/transport/expert_wire.h"
#include "kernels/backend.h"

namespace dsv3 {

struct ExpertWorkerOptions {
  std::string model_dir;
  std::string experts = "all";  // "0-127,200"
  std::string worker_id;
  int threads = 0;
  kernels::CpuIsa isa = kernels::CpuIsa::kAuto;
  // Benchmarks of the exchange alone: skip the expert math, return zeros.
  bool skip_compute = false;
  // Called after every batch (metrics): tokens in it, seconds spent, whether it succeeded.
  std::function<void(int64_t tokens, double seconds, bool ok)> on_batch;
};

class ExpertWorker {
 public:
  static StatusOr<std::unique_ptr<ExpertWorker>> Create(const ExpertWorkerOptions& opts);

  const ModelConfig& config() const { return ckpt_->config(); }
  const std::vector<int32_t>& experts() const { return experts_; }
  expert_pb::DescribeResponse Describe() const;
  // Never fails as a call: errors travel inside the result (error_code/message), so one
  // bad message does not take the stream or the process down.
  expert_pb::ExpertResult Handle(const expert_pb::ExpertBatch& batch);
  // The same for byte transports (UCX, NCCL): a serialized batch in, a serialized result
  // out; unparsable input becomes an error result for `fallback_seq`.
  void HandleSerialized(const std::string& in, uint64_t fallback_seq, std::string* out);
  uint64_t handled() const { return handled_; }
  // Drain (SIGTERM): batches from now on answer UNAVAILABLE (the attention side sends them
  // to a replica, or holds them until this worker is back), Describe-based probes fail, and
  // the batch being computed finishes. in_flight(): batches inside Handle().
  void BeginDrain() { draining_ = true; }
  bool draining() const { return draining_; }
  int in_flight() const { return in_flight_; }
  uint64_t resident_weight_bytes() const { return ckpt_->bytes_mapped(); }

 private:
  expert_pb::ExpertResult HandleUntimed(const expert_pb::ExpertBatch& batch);
  ExpertWorker() = default;
  ExpertWorkerOptions opts_;
  std::unique_ptr<Checkpoint> ckpt_;
  ModelWeights weights_;
  std::unique_ptr<kernels::Backend> backend_;
  std::vector<int32_t> experts_;
  WireLimits limits_;
  std::string fingerprint_;
  std::mutex mu_;  // one batch at a time on the backend
  uint64_t handled_ = 0;
  std::atomic<bool> draining_{false};
  std::atomic<int> in_flight_{0};
};

}  // namespace dsv3
