#include "common/model/router.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace dsv3 {

void RouteTokens(const ModelConfig& cfg, const float* logits, const float* bias, int64_t tokens,
                 RoutingResult* out) {
  const int64_t E = cfg.n_routed_experts, K = cfg.num_experts_per_tok;
  const int64_t G = cfg.topk_method == TopkMethod::kGreedy ? 1 : cfg.n_group;
  const int64_t per_group = E / G;
  out->tokens = tokens;
  out->k = K;
  out->experts.assign(static_cast<size_t>(tokens * K), 0);
  out->weights.assign(static_cast<size_t>(tokens * K), 0.0f);
  // V3 scales after normalizing; V2 (Hugging Face semantics) scales only unnormalized weights.
  const bool scale = cfg.model_type == "deepseek_v3" || !cfg.norm_topk_prob;
  const float route_scale = static_cast<float>(cfg.routed_scaling_factor);
  std::vector<float> scores(E), sel(E), group_score(G);
  std::vector<int32_t> order(E), gorder(G);
  for (int64_t t = 0; t < tokens; ++t) {
    const float* lg = logits + t * E;
    if (cfg.scoring_func == ScoringFunc::kSigmoid) {
      for (int64_t e = 0; e < E; ++e) scores[e] = 1.0f / (1.0f + std::exp(-lg[e]));
    } else {
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t e = 0; e < E; ++e) mx = std::max(mx, lg[e]);
      double sum = 0;
      for (int64_t e = 0; e < E; ++e) sum += std::exp(static_cast<double>(lg[e] - mx));
      for (int64_t e = 0; e < E; ++e) scores[e] = static_cast<float>(std::exp(static_cast<double>(lg[e] - mx)) / sum);
    }
    for (int64_t e = 0; e < E; ++e) sel[e] = bias ? scores[e] + bias[e] : scores[e];
    if (G > 1) {
      for (int64_t g = 0; g < G; ++g) {
        const float* s = sel.data() + g * per_group;
        if (cfg.topk_method == TopkMethod::kNoauxTc) {
          float a = -std::numeric_limits<float>::infinity(), b = a;
          for (int64_t i = 0; i < per_group; ++i) {
            if (s[i] > a) { b = a; a = s[i]; } else if (s[i] > b) { b = s[i]; }
          }
          group_score[g] = a + b;
        } else {
          group_score[g] = *std::max_element(s, s + per_group);
        }
      }
      std::iota(gorder.begin(), gorder.end(), 0);
      // Ties go to the lower index, like torch.topk on CPU.
      std::stable_sort(gorder.begin(), gorder.end(), [&](int32_t x, int32_t y) { return group_score[x] > group_score[y]; });
      std::vector<bool> keep(G, false);
      for (int64_t i = 0; i < cfg.topk_group; ++i) keep[gorder[i]] = true;
      for (int64_t g = 0; g < G; ++g) {
        if (keep[g]) continue;
        for (int64_t i = 0; i < per_group; ++i) sel[g * per_group + i] = -std::numeric_limits<float>::infinity();
      }
    }
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + K, order.end(), [&](int32_t x, int32_t y) {
      return sel[x] > sel[y] || (sel[x] == sel[y] && x < y);
    });
    float sum = 0;
    for (int64_t i = 0; i < K; ++i) sum += scores[order[i]];
    for (int64_t i = 0; i < K; ++i) {
      float w = scores[order[i]];
      if (cfg.norm_topk_prob) w /= sum;
      if (scale) w *= route_scale;
      out->experts[t * K + i] = order[i];
      out->weights[t * K + i] = w;
    }
  }
}

}  // namespace dsv3
