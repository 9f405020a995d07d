// RoutedExpertExecutor: the attention side's view of the routed experts of one MoE
// layer. The in-process implementation computes them here; the expert-worker dispatcher
// (issue: expert workers) implements the same call over a transport.
//
// Contract: out[t] = sum over the token's k selections, in ascending expert id, of
// weight * expert(x[t]) (SwiGLU), starting from zero. The fixed order makes every
// placement of experts give bit-identical sums.
#pragma once

#include <cstdint>
#include <vector>

#include "common/config/model_config.h"
#include "common/model/model_weights.h"
#include "common/model/router.h"
#include "common/status.h"
#include "kernels/backend.h"

namespace dsv3 {

class RoutedExpertExecutor {
 public:
  virtual ~RoutedExpertExecutor() = default;
  // Hands one MoE layer's routed work off (x: [tokens, hidden], must stay valid until
  // Combine returns). Remote executors return as soon as the work is sent, so the caller
  // computes the shared expert meanwhile.
  virtual Status Dispatch(int64_t layer, const float* x, const RoutingResult& routing) = 0;
  // Waits for the dispatched layer; out: [tokens, hidden], overwritten.
  virtual Status Combine(float* out) = 0;
};

// Grouped SwiGLU experts: rows x[t] with `slots` selections each (ids[t, s], -1 = none):
// out[t] = sum over the slots, in ascending expert id, of weights[t, s] * expert(x[t]),
// from zero. Experts run in parallel on the backend's pool. Errors: an id out of range or
// not hosted by `moe`.
Status ComputeRoutedExperts(kernels::Backend& backend, const MoeWeights& moe, int64_t hidden, const float* x,
                            int64_t tokens, int64_t slots, const int32_t* ids, const float* weights, float* out);

// Computes experts in this process from `weights` (only hosted experts may be selected).
class LocalExpertExecutor final : public RoutedExpertExecutor {
 public:
  LocalExpertExecutor(const ModelConfig& cfg, const ModelWeights& weights, kernels::Backend& backend)
      : cfg_(cfg), weights_(weights), backend_(backend) {}
  Status Dispatch(int64_t layer, const float* x, const RoutingResult& routing) override;
  Status Combine(float* out) override;

 private:
  const ModelConfig& cfg_;
  const ModelWeights& weights_;
  kernels::Backend& backend_;
  std::vector<float> result_;
  Status status_;
};

// One SwiGLU MLP on `m` rows: out[m, hidden] = down(silu(gate x) * up x).
void RunMlp(kernels::Backend& backend, const MlpWeights& w, const float* x, int64_t m, float* out);

}  // namespace dsv3
