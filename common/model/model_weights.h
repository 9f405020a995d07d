// ModelWeights: typed views of one checkpoint's tensors, laid out per layer, each checked
// for dtype and shape against the config when the model is loaded (so a bad checkpoint
// fails at load time with the tensor's name, never inside a forward pass).
#pragma once

#include <optional>
#include <vector>

#include "common/checkpoint/checkpoint.h"
#include "kernels/weight_matrix.h"

namespace dsv3 {

using kernels::WeightMatrix;
using kernels::WeightVector;

struct MlpWeights {  // SwiGLU: down(silu(gate x) * up x)
  WeightMatrix gate, up, down;
};

struct AttentionWeights {
  std::optional<WeightMatrix> q_a;  // [q_lora, hidden]  (absent when q_lora_rank == 0)
  WeightVector q_a_norm;            // [q_lora]
  WeightMatrix q_b;                 // [H * qk_head_dim, q_lora]  or q_proj [.., hidden]
  WeightMatrix kv_a;                // [kv_lora + rope, hidden]
  WeightVector kv_a_norm;           // [kv_lora]
  WeightMatrix kv_b;                // [H * (nope + v), kv_lora]
  WeightMatrix o;                   // [hidden, H * v]
};

struct MoeWeights {
  WeightMatrix gate;                 // [n_routed, hidden]
  const float* gate_bias = nullptr;  // [n_routed] e_score_correction_bias (noaux_tc)
  std::vector<MlpWeights> experts;   // n_routed entries; only hosted ones are filled
  std::vector<bool> hosted;          // which routed experts this process has
  std::optional<MlpWeights> shared;  // n_shared merged into one MLP of n_shared * moe_inter
};

struct LayerWeights {
  WeightVector attn_norm, ffn_norm;
  AttentionWeights attn;
  std::optional<MlpWeights> dense;  // dense layers
  std::optional<MoeWeights> moe;    // MoE layers
};

struct ModelWeights {
  WeightMatrix embed;     // [vocab, hidden]
  WeightVector final_norm;
  WeightMatrix lm_head;   // [vocab, hidden]
  std::vector<LayerWeights> layers;
};

// Which tensors a process needs. The single-process engine takes everything; an expert
// worker takes only routed experts in its slice (later: attention workers none).
struct WeightSelection {
  bool attention_and_dense = true;  // embeddings, attention, dense MLPs, gates, shared, head
  bool routed_experts = true;
  std::vector<bool> expert_mask;    // empty: all routed experts
  bool copy_to_anonymous = false;   // see Checkpoint::Load
};

// Tensor names (HF layout) that `sel` needs, scales included.
std::vector<std::string> RequiredTensorNames(const ModelConfig& cfg, const WeightSelection& sel);
// Loads (maps) what `sel` needs and builds the views.
StatusOr<ModelWeights> LoadModelWeights(Checkpoint& ckpt, const WeightSelection& sel,
                                        const LoadProgressFn& progress = nullptr);

}  // namespace dsv3
