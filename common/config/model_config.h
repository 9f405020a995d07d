// ModelConfig: every field of a Hugging Face DeepSeek-V3 / V2 `config.json` that the math
// uses, parsed and validated once. Everything downstream (loader, model, tools) reads the
// model's shape from here and never from the raw JSON.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/status.h"

namespace dsv3 {

enum class ScoringFunc { kSigmoid, kSoftmax };
// noaux_tc: V3 (bias-corrected selection, group score = sum of top-2);
// group_limited_greedy: V2 (group score = max); greedy: no group limit.
enum class TopkMethod { kNoauxTc, kGroupLimitedGreedy, kGreedy };

struct RopeScaling {
  bool yarn = false;  // false: plain RoPE
  double factor = 1.0;
  int64_t original_max_position_embeddings = 4096;
  double beta_fast = 32;
  double beta_slow = 1;
  double mscale = 1.0;
  double mscale_all_dim = 1.0;
};

struct QuantizationConfig {
  bool fp8 = false;  // quant_method fp8 with block scales
  int64_t block_rows = 128;
  int64_t block_cols = 128;
  bool scale_ue8m0 = false;  // scale_fmt "ue8m0": power-of-two scales
};

struct ModelConfig {
  std::string model_type = "deepseek_v3";
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t moe_intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t n_routed_experts = 0;
  int64_t n_shared_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  TopkMethod topk_method = TopkMethod::kNoauxTc;
  ScoringFunc scoring_func = ScoringFunc::kSigmoid;
  bool norm_topk_prob = true;
  double routed_scaling_factor = 1.0;
  int64_t first_k_dense_replace = 0;
  int64_t moe_layer_freq = 1;
  int64_t q_lora_rank = 0;  // 0: no q compression (V2-Lite: q_proj directly)
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  int64_t num_nextn_predict_layers = 0;
  int64_t bos_token_id = 0;
  int64_t eos_token_id = 1;
  bool tie_word_embeddings = false;
  QuantizationConfig quantization;

  static StatusOr<ModelConfig> FromJson(const nlohmann::json& j);
  static StatusOr<ModelConfig> FromFile(const std::string& path);
  // Writes the Hugging Face keys back (dsv3-mkmodel uses it).
  nlohmann::json ToJson() const;
  Status Validate() const;
  // Digest of the canonical JSON: equal on two processes <=> same model shape.
  std::string Fingerprint() const;

  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  // Values per token and layer in the compressed MLA cache.
  int64_t latent_dim() const { return kv_lora_rank + qk_rope_head_dim; }
  bool IsMoeLayer(int64_t layer) const {
    return n_routed_experts > 0 && layer >= first_k_dense_replace &&
           layer % moe_layer_freq == 0;
  }
  // (qk_head_dim)^-0.5, times mscale^2 under YaRN (mscale from mscale_all_dim).
  double SoftmaxScale() const;
  // qk_rope_head_dim/2 inverse frequencies, YaRN-corrected, computed in float32 as the
  // official precompute_freqs_cis does.
  std::vector<float> RopeInvFreq() const;
  // Multiplier on cos/sin: yarn_get_mscale(factor, mscale) / yarn_get_mscale(factor,
  // mscale_all_dim) (1 for DeepSeek-V3).
  float RopeAttentionFactor() const;
};

}  // namespace dsv3
