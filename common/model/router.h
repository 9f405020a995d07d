// MoE gate routing (DeepSeek-V3 `noaux_tc`, V2 `group_limited_greedy` / `greedy`):
// turns gate logits into each token's selected experts and their weights.
#pragma once

#include <cstdint>
#include <vector>

#include "common/config/model_config.h"

namespace dsv3 {

struct RoutingResult {
  int64_t tokens = 0;
  int64_t k = 0;
  std::vector<int32_t> experts;  // [tokens, k], best (biased) score first, as torch.topk
  std::vector<float> weights;    // [tokens, k]
};

// logits: [tokens, n_routed_experts] = gate(x). bias: e_score_correction_bias or nullptr.
// Selection uses score + bias, group score = sum of the group's top-2 (noaux_tc) or its
// max; the weights are the unbiased scores, normalized if norm_topk_prob, times
// routed_scaling_factor.
void RouteTokens(const ModelConfig& cfg, const float* logits, const float* bias, int64_t tokens,
                 RoutingResult* out);

}  // namespace dsv3
