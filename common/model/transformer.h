// Transformer: the DeepSeek-V3 forward pass over a batch of sequence slices, composed
// from kernels::Backend calls. Shared by the offline generator, the attention worker and
// the tests: there is one implementation of the math.
//
//   ids -> embed -> for each layer: x += attn(attn_norm(x)); x += ffn(ffn_norm(x))
//       -> final norm (rows asked for) -> lm_head -> logits
// ffn is the dense SwiGLU MLP for the first first_k_dense_replace layers, else the MoE:
// gate routing, routed experts through a RoutedExpertExecutor, plus the shared expert.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "common/config/model_config.h"
#include "common/model/expert_executor.h"
#include "common/model/mla_attention.h"
#include "common/model/model_weights.h"
#include "common/model/router.h"
#include "common/model/sequence_kv_cache.h"
#include "kernels/backend.h"

namespace dsv3 {

struct SequenceInput {
  KvSequence* kv = nullptr;
  const int64_t* tokens = nullptr;
  int64_t len = 0;
  int64_t start_pos = 0;  // must equal kv->length(): slices extend their cache in order
  bool all_logits = false;  // logits for every token of this slice, not just its last
};

// Optional taps for tests and debugging (named intermediate values).
struct ForwardObserver {
  // stage: 0 = embedding output, 1..L = residual after block l-1, L+1 = final norm output;
  // x: [rows, hidden] for all rows of the batch.
  std::function<void(int64_t stage, const float* x, int64_t rows)> on_hidden;
  std::function<void(int64_t layer, const RoutingResult& r)> on_routing;
};

class Transformer {
 public:
  // `experts` may be null: routed experts then run in-process from `weights`.
  Transformer(const ModelConfig& cfg, const ModelWeights& weights, kernels::Backend& backend,
              RoutedExpertExecutor* experts = nullptr);

  const ModelConfig& config() const { return cfg_; }
  std::unique_ptr<SequenceKvCache> NewCache() const {
    return std::make_unique<SequenceKvCache>(cfg_.num_hidden_layers, cfg_.latent_dim());
  }

  // Runs all slices in one step. logits: for each slice in order, the rows of its last
  // token, or of all its tokens when the slice (or the call: all_logits) asks for them;
  // [rows, vocab]. Advances each cache's length.
  Status Forward(const std::vector<SequenceInput>& seqs, std::vector<float>* logits, bool all_logits = false,
                 const ForwardObserver* observer = nullptr);

 private:
  void Ffn(int64_t layer, const float* xn, int64_t T, float* out, const ForwardObserver* obs, Status* st);

  const ModelConfig& cfg_;
  const ModelWeights& weights_;
  kernels::Backend& backend_;
  std::unique_ptr<LocalExpertExecutor> local_experts_;
  RoutedExpertExecutor* experts_;
  MlaAttention attention_;
};

}  // namespace dsv3
