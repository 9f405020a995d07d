// Multi-head Latent Attention, absorbed form (the official `attn_impl = "absorb"`):
// the cache holds only the normalized latent c = kv_a_norm(kv_a(x))[:kv_lora] and the
// rotated k_pe; q_nope is folded through kv_b's key half so every head scores against
// the shared latent (MQA-like), and the value half of kv_b is applied after attention.
//
// Data flow for the rows of one forward (tokens of several sequences, concatenated):
//   xn [T, hidden] -> q [T, H, nope+rope] (q_a, q_a_norm, q_b; rope on the pe part)
//                  -> latent [T, kv_lora+rope] -> written to each sequence's cache
//   q_abs [T, H, kv_lora] = q_nope . Wk_h
//   per sequence: scores [(t,h), S] = (q_abs . c^T + q_pe . k_pe^T) * softmax_scale,
//                 causal, softmax, o_lat = P . c, out[t, h] = o_lat . Wv_h^T
//   -> o_proj -> [T, hidden]
#pragma once

#include <cstdint>
#include <vector>

#include "common/config/model_config.h"
#include "common/model/model_weights.h"
#include "common/model/kv_sequence.h"
#include "common/status.h"
#include "kernels/backend.h"

namespace dsv3 {

struct SequenceSlice {
  KvSequence* kv = nullptr;
  int64_t start_pos = 0;  // position of the first token of this slice
  int64_t len = 0;        // tokens of this slice
  int64_t row = 0;        // first row of the slice in the batch matrices
};

class MlaAttention {
 public:
  MlaAttention(const ModelConfig& cfg, kernels::Backend& backend);
  // xn: [T, hidden] normalized input; positions: [T]; out: [T, hidden].
  void Forward(const AttentionWeights& w, int64_t layer, const float* xn, int64_t tokens,
               const int64_t* positions, const std::vector<SequenceSlice>& seqs, float* out);

 private:
  const ModelConfig& cfg_;
  kernels::Backend& backend_;
  std::vector<float> inv_freq_;
  float rope_factor_;
  float softmax_scale_;
};

}  // namespace dsv3
