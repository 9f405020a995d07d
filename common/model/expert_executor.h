// RoutedExpertExecutor: the attention side's view of the routed experts of one MoE
// layer. The in-process implementation computes them here; the expert-worker dispatcher
// (issue: expert workers) implements the same call over a transport.
//
// Contract: out[t] = sum over the token's k selections, in ascending expert id, of
// weight * expert(x[t]) (SwiGLU), starting from zero. The fixed order makes every
// placement of experts give bit-identical sums.
#pragma once

#include <cstdint>

#include "common/config/model_config.h"
#include "common/model/model_weights.h"
#include "common/model/router.h"
#include "common/status.h"
#include "kernels/backend.h"

namespace dsv3 {

class RoutedExpertExecutor {
 public:
  virtual ~RoutedExpertExecutor() = default;
  // x: [tokens, hidden]; out: [tokens, hidden], overwritten.
  virtual Status Run(int64_t layer, const float* x, const RoutingResult& routing, float* out) = 0;
};

// Computes experts in this process from `weights` (only hosted experts may be selected).
class LocalExpertExecutor final : public RoutedExpertExecutor {
 public:
  LocalExpertExecutor(const ModelConfig& cfg, const ModelWeights& weights, kernels::Backend& backend)
      : cfg_(cfg), weights_(weights), backend_(backend) {}
  Status Run(int64_t layer, const float* x, const RoutingResult& routing, float* out) override;

 private:
  const ModelConfig& cfg_;
  const ModelWeights& weights_;
  kernels::Backend& backend_;
};

// One SwiGLU MLP on `m` rows: out[m, hidden] = down(silu(gate x) * up x).
void RunMlp(kernels::Backend& backend, const MlpWeights& w, const float* x, int64_t m, float* out);

}  // namespace dsv3
