#include "common/model/model_weights.h"

namespace dsv3 {
namespace {

using kernels::WeightType;

std::string L(int64_t layer, const char* rest) { return StrCat("model.layers.", layer, ".", rest); }
std::string E(int64_t layer, int64_t e, const char* proj) {
  return StrCat("model.layers.", layer, ".mlp.experts.", e, ".", proj, ".weight");
}

void AddLinear(const Checkpoint& ck, const std::string& name, std::vector<std::string>* out) {
  out->push_back(name);
  // FP8 weights bring their block scales; whether a weight is FP8 is decided by its dtype.
  const std::string scale = name + "_scale_inv";
  if (ck.Has(scale)) out->push_back(scale);
}

StatusOr<WeightType> ToWeightType(DType d) {
  switch (d) {
    case DType::kF32: return WeightType::kF32;
    case DType::kBF16: return WeightType::kBF16;
    case DType::kF16: return WeightType::kF16;
    case DType::kF8E4M3: return WeightType::kF8E4M3;
    default: return InvalidArgument("checkpoint", "unsupported weight dtype");
  }
}

class Builder {
 public:
  explicit Builder(const Checkpoint& ck) : ck_(ck), cfg_(ck.config()) {}

  StatusOr<WeightMatrix> Matrix(const std::string& name, int64_t rows, int64_t cols, bool allow_fp8 = true) {
    DSV3_ASSIGN_OR_RETURN(TensorView t, ck_.Get(name, {DType::kBF16, DType::kF16, DType::kF32, DType::kF8E4M3},
                                                {rows, cols}));
    WeightMatrix w;
    DSV3_ASSIGN_OR_RETURN(w.type, ToWeightType(t.dtype()));
    w.rows = rows;
    w.cols = cols;
    w.data = t.data;
    if (w.type == WeightType::kF8E4M3) {
      if (!allow_fp8) return InvalidArgument("checkpoint", StrCat("tensor '", name, "' must not be FP8"));
      const std::string sname = name + "_scale_inv";
      if (!ck_.Has(sname)) {
        return NotFound("checkpoint", StrCat(ck_.dir(), ": FP8 tensor '", name,
                                                   "' has no block scale tensor '", sname, "'"));
      }
      w.block_rows = cfg_.quantization.block_rows;
      w.block_cols = cfg_.quantization.block_cols;
      const int64_t sr = (rows + w.block_rows - 1) / w.block_rows, sc = (cols + w.block_cols - 1) / w.block_cols;
      DSV3_ASSIGN_OR_RETURN(TensorView s, ck_.Get(sname, {DType::kF32}, {sr, sc}));
      w.scale_inv = static_cast<const float*>(s.data);
    }
    return w;
  }

  StatusOr<WeightVector> Vector(const std::string& name, int64_t n) {
    DSV3_ASSIGN_OR_RETURN(TensorView t, ck_.Get(name, {DType::kBF16, DType::kF32}, {n}));
    WeightVector v;
    v.type = t.dtype() == DType::kBF16 ? WeightType::kBF16 : WeightType::kF32;
    v.size = n;
    v.data = t.data;
    return v;
  }

  StatusOr<MlpWeights> Mlp(const std::string& prefix, int64_t inter) {
    MlpWeights m;
    const int64_t h = cfg_.hidden_size;
    DSV3_ASSIGN_OR_RETURN(m.gate, Matrix(prefix + "gate_proj.weight", inter, h));
    DSV3_ASSIGN_OR_RETURN(m.up, Matrix(prefix + "up_proj.weight", inter, h));
    DSV3_ASSIGN_OR_RETURN(m.down, Matrix(prefix + "down_proj.weight", h, inter));
    return m;
  }

 private:
  const Checkpoint& ck_;
  const ModelConfig& cfg_;
};

bool WantExpert(const WeightSelection& sel, int64_t e) {
  return sel.routed_experts && (sel.expert_mask.empty() || (e < static_cast<int64_t>(sel.expert_mask.size()) && sel.expert_mask[e]));
}

}  // namespace

std::vector<std::string> RequiredTensorNames(const ModelConfig& cfg, const WeightSelection& sel) {
  // Names only; whether a scale exists is decided against the checkpoint in LoadModelWeights.
  std::vector<std::string> n;
  if (sel.attention_and_dense) {
    n.push_back("model.embed_tokens.weight");
    n.push_back("model.norm.weight");
    if (!cfg.tie_word_embeddings) n.push_back("lm_head.weight");
  }
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    if (sel.attention_and_dense) {
      n.push_back(L(l, "input_layernorm.weight"));
      n.push_back(L(l, "post_attention_layernorm.weight"));
      if (cfg.q_lora_rank > 0) {
        n.push_back(L(l, "self_attn.q_a_proj.weight"));
        n.push_back(L(l, "self_attn.q_a_layernorm.weight"));
        n.push_back(L(l, "self_attn.q_b_proj.weight"));
      } else {
        n.push_back(L(l, "self_attn.q_proj.weight"));
      }
      n.push_back(L(l, "self_attn.kv_a_proj_with_mqa.weight"));
      n.push_back(L(l, "self_attn.kv_a_layernorm.weight"));
      n.push_back(L(l, "self_attn.kv_b_proj.weight"));
      n.push_back(L(l, "self_attn.o_proj.weight"));
      if (!cfg.IsMoeLayer(l)) {
        for (const char* p : {"mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"}) n.push_back(L(l, p));
      } else {
        n.push_back(L(l, "mlp.gate.weight"));
        if (cfg.topk_method == TopkMethod::kNoauxTc) n.push_back(L(l, "mlp.gate.e_score_correction_bias"));
        if (cfg.n_shared_experts > 0) {
          for (const char* p : {"mlp.shared_experts.gate_proj.weight", "mlp.shared_experts.up_proj.weight",
                                "mlp.shared_experts.down_proj.weight"}) {
            n.push_back(L(l, p));
          }
        }
      }
    }
    if (cfg.IsMoeLayer(l)) {
      for (int64_t e = 0; e < cfg.n_routed_experts; ++e) {
        if (!WantExpert(sel, e)) continue;
        for (const char* p : {"gate_proj", "up_proj", "down_proj"}) n.push_back(E(l, e, p));
      }
    }
  }
  return n;
}

StatusOr<ModelWeights> LoadModelWeights(Checkpoint& ckpt, const WeightSelection& sel,
                                        const LoadProgressFn& progress) {
  const ModelConfig& cfg = ckpt.config();
  std::vector<std::string> names;
  for (const auto& n : RequiredTensorNames(cfg, sel)) {
    if (!ckpt.Has(n)) return NotFound("checkpoint", StrCat(ckpt.dir(), ": missing tensor '", n, "'"));
    AddLinear(ckpt, n, &names);
  }
  DSV3_RETURN_IF_ERROR(ckpt.Load(names, progress, sel.copy_to_anonymous));

  Builder b(ckpt);
  ModelWeights w;
  const int64_t h = cfg.hidden_size, H = cfg.num_attention_heads;
  if (sel.attention_and_dense) {
    DSV3_ASSIGN_OR_RETURN(w.embed, b.Matrix("model.embed_tokens.weight", cfg.vocab_size, h, false));
    DSV3_ASSIGN_OR_RETURN(w.final_norm, b.Vector("model.norm.weight", h));
    if (cfg.tie_word_embeddings) {
      w.lm_head = w.embed;
    } else {
      DSV3_ASSIGN_OR_RETURN(w.lm_head, b.Matrix("lm_head.weight", cfg.vocab_size, h));
    }
  }
  w.layers.resize(cfg.num_hidden_layers);
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    LayerWeights& lw = w.layers[l];
    if (sel.attention_and_dense) {
      DSV3_ASSIGN_OR_RETURN(lw.attn_norm, b.Vector(L(l, "input_layernorm.weight"), h));
      DSV3_ASSIGN_OR_RETURN(lw.ffn_norm, b.Vector(L(l, "post_attention_layernorm.weight"), h));
      AttentionWeights& a = lw.attn;
      if (cfg.q_lora_rank > 0) {
        DSV3_ASSIGN_OR_RETURN(a.q_a, b.Matrix(L(l, "self_attn.q_a_proj.weight"), cfg.q_lora_rank, h));
        DSV3_ASSIGN_OR_RETURN(a.q_a_norm, b.Vector(L(l, "self_attn.q_a_layernorm.weight"), cfg.q_lora_rank));
        DSV3_ASSIGN_OR_RETURN(a.q_b, b.Matrix(L(l, "self_attn.q_b_proj.weight"), H * cfg.qk_head_dim(), cfg.q_lora_rank));
      } else {
        DSV3_ASSIGN_OR_RETURN(a.q_b, b.Matrix(L(l, "self_attn.q_proj.weight"), H * cfg.qk_head_dim(), h));
      }
      DSV3_ASSIGN_OR_RETURN(a.kv_a, b.Matrix(L(l, "self_attn.kv_a_proj_with_mqa.weight"), cfg.latent_dim(), h));
      DSV3_ASSIGN_OR_RETURN(a.kv_a_norm, b.Vector(L(l, "self_attn.kv_a_layernorm.weight"), cfg.kv_lora_rank));
      DSV3_ASSIGN_OR_RETURN(a.kv_b, b.Matrix(L(l, "self_attn.kv_b_proj.weight"),
                                             H * (cfg.qk_nope_head_dim + cfg.v_head_dim), cfg.kv_lora_rank));
      DSV3_ASSIGN_OR_RETURN(a.o, b.Matrix(L(l, "self_attn.o_proj.weight"), h, H * cfg.v_head_dim));
      if (!cfg.IsMoeLayer(l)) {
        DSV3_ASSIGN_OR_RETURN(lw.dense, b.Mlp(L(l, "mlp."), cfg.intermediate_size));
      }
    }
    if (cfg.IsMoeLayer(l)) {
      MoeWeights m;
      if (sel.attention_and_dense) {
        DSV3_ASSIGN_OR_RETURN(m.gate, b.Matrix(L(l, "mlp.gate.weight"), cfg.n_routed_experts, h, false));
        if (cfg.topk_method == TopkMethod::kNoauxTc) {
          DSV3_ASSIGN_OR_RETURN(TensorView bias, ckpt.Get(L(l, "mlp.gate.e_score_correction_bias"), {DType::kF32},
                                                          {cfg.n_routed_experts}));
          m.gate_bias = static_cast<const float*>(bias.data);
        }
        if (cfg.n_shared_experts > 0) {
          DSV3_ASSIGN_OR_RETURN(m.shared, b.Mlp(L(l, "mlp.shared_experts."), cfg.n_shared_experts * cfg.moe_intermediate_size));
        }
      }
      m.experts.resize(cfg.n_routed_experts);
      m.hosted.assign(cfg.n_routed_experts, false);
      for (int64_t e = 0; e < cfg.n_routed_experts; ++e) {
        if (!WantExpert(sel, e)) continue;
        DSV3_ASSIGN_OR_RETURN(m.experts[e], b.Mlp(StrCat("model.layers.", l, ".mlp.experts.", e, "."),
                                                  cfg.moe_intermediate_size));
        m.hosted[e] = true;
      }
      lw.moe = std::move(m);
    }
  }
  return w;
}

}  // namespace dsv3
