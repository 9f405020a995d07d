#include "common/config/model_config.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace dsv3 {
namespace {

using nlohmann::json;
constexpr std::string_view kSub = "config";

// Typed field readers: a wrong type is an error naming the key, never a silent default.
Status ReadInt(const json& j, const char* key, int64_t* out, bool required) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) return InvalidArgument(kSub, StrCat("missing required key '", key, "'"));
    return absl::OkStatus();
  }
  if (it->is_number_integer() || it->is_number_unsigned()) {
    *out = it->get<int64_t>();
    return absl::OkStatus();
  }
  if (it->is_number_float()) {
    double v = it->get<double>();
    if (v == std::floor(v) && std::fabs(v) < 9e15) {
      *out = static_cast<int64_t>(v);
      return absl::OkStatus();
    }
  }
  return InvalidArgument(kSub, StrCat("key '", key, "' must be an integer, got ", it->dump()));
}

Status ReadDouble(const json& j, const char* key, double* out, bool required) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) return InvalidArgument(kSub, StrCat("missing required key '", key, "'"));
    return absl::OkStatus();
  }
  if (!it->is_number()) {
    return InvalidArgument(kSub, StrCat("key '", key, "' must be a number, got ", it->dump()));
  }
  *out = it->get<double>();
  return absl::OkStatus();
}

Status ReadBool(const json& j, const char* key, bool* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_boolean()) {
    return InvalidArgument(kSub, StrCat("key '", key, "' must be a boolean, got ", it->dump()));
  }
  *out = it->get<bool>();
  return absl::OkStatus();
}

Status ReadString(const json& j, const char* key, std::string* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_string()) {
    return InvalidArgument(kSub, StrCat("key '", key, "' must be a string, got ", it->dump()));
  }
  *out = it->get<std::string>();
  return absl::OkStatus();
}

double YarnGetMscale(double scale, double mscale) {
  if (scale <= 1.0) return 1.0;
  return 0.1 * mscale * std::log(scale) + 1.0;
}

}  // namespace

StatusOr<ModelConfig> ModelConfig::FromJson(const json& j) {
  if (!j.is_object()) return InvalidArgument(kSub, "config.json must hold a JSON object");
  ModelConfig c;
  DSV3_RETURN_IF_ERROR(ReadString(j, "model_type", &c.model_type));
  if (c.model_type != "deepseek_v3" && c.model_type != "deepseek_v2") {
    return InvalidArgument(kSub, StrCat("unsupported model_type '", c.model_type,
                                              "' (supported: deepseek_v3, deepseek_v2)"));
  }
  const bool v3 = c.model_type == "deepseek_v3";
  DSV3_RETURN_IF_ERROR(ReadInt(j, "vocab_size", &c.vocab_size, true));
  DSV3_RETURN_IF_ERROR(ReadInt(j, "hidden_size", &c.hidden_size, true));
  DSV3_RETURN_IF_ERROR(ReadInt(j, "intermediate_size", &c.intermediate_size, true));
  DSV3_RETURN_IF_ERROR(ReadInt(j, "num_hidden_layers", &c.num_hidden_layers, true));
  DSV3_RETURN_IF_ERROR(ReadInt(j, "num_attention_heads", &c.num_attention_heads, true));
  c.num_key_value_heads = c.num_attention_heads;
  DSV3_RETURN_IF_ERROR(ReadInt(j, "num_key_value_heads", &c.num_key_value_heads, false));
  DSV3_RETURN_IF_ERROR(ReadInt(j, "moe_intermediate_size", &c.moe_intermediate_size, false));
  DSV3_RETURN_IF_ERROR(ReadInt(j, "n_routed_experts", &c.n_routed_experts, false));
  DSV3_RETURN_IF_ERROR(ReadInt(j, "n_shared_experts", &c.n_shared_experts, false));
  DSV3_RETURN_IF_ERROR(ReadInt(j, "num_experts_per_tok", &c.num_experts_per_tok, false));
  DSV3_RETURN_IF_ERROR(ReadInt(j, "n_group", &c.n_group, false));
  DSV3_RETURN_IF_ERROR(ReadInt(j, "topk_group", &c.topk_group, false));
  std::string topk_method = v3 ? "noaux_tc" : "greedy";
  DSV3_RETURN_IF_ERROR(ReadString(j, "topk_method", &topk_method));
  if (topk_method == "noaux_tc") {
    c.topk_method = TopkMethod::kNoauxTc;
  } else if (topk_method == "group_limited_greedy") {
    c.topk_method = TopkMethod::kGroupLimitedGreedy;
  } else if (topk_method == "greedy") {
    c.topk_method = TopkMethod::kGreedy;
  } else {
    return InvalidArgument(kSub, StrCat("unsupported topk_method '", topk_method, "'"));
  }
  std::string scoring = v3 ? "sigmoid" : "softmax";
  DSV3_RETURN_IF_ERROR(ReadString(j, "scoring_func", &scoring));
  if (scoring == "sigmoid") {
    c.scoring_func = ScoringFunc::kSigmoid;
  } else if (scoring == "softmax") {
    c.scoring_func = ScoringFunc::kSoftmax;
  } else {
    return InvalidArgument(kSub, StrCat("unsupported scoring_func '", scoring, "'"));
  }
  c.norm_topk_prob = v3;
  DSV3_RETURN_IF_ERROR(ReadBool(j, "norm_topk_prob", &c.norm_topk_prob));
  DSV3_RETURN_IF_ERROR(ReadDouble(j, "routed_scaling_factor", &c.routed_scaling_factor, false));
  DSV3_RETURN_IF_ERROR(ReadInt(j, "first_k_dense_replace", &c.first_k_dense_replace, false));
  DSV3_RETURN_IF_ERROR(ReadInt(j, "moe_layer_freq", &c.moe_layer_freq, false));
  DSV3_RETURN_IF_ERROR(ReadInt(j, "q_lora_rank", &c.q_lora_rank, false));
  DSV3_RETURN_IF_ERROR(ReadInt(j, "kv_lora_rank", &c.kv_lora_rank, true));
  DSV3_RETURN_IF_ERROR(ReadInt(j, "qk_nope_head_dim", &c.qk_nope_head_dim, true));
  DSV3_RETURN_IF_ERROR(ReadInt(j, "qk_rope_head_dim", &c.qk_rope_head_dim, true));
  DSV3_RETURN_IF_ERROR(ReadInt(j, "v_head_dim", &c.v_head_dim, true));
  DSV3_RETURN_IF_ERROR(ReadDouble(j, "rope_theta", &c.rope_theta, false));
  DSV3_RETURN_IF_ERROR(ReadInt(j, "max_position_embeddings", &c.max_position_embeddings, true));
  DSV3_RETURN_IF_ERROR(ReadDouble(j, "rms_norm_eps", &c.rms_norm_eps, false));
  DSV3_RETURN_IF_ERROR(ReadInt(j, "num_nextn_predict_layers", &c.num_nextn_predict_layers, false));
  DSV3_RETURN_IF_ERROR(ReadInt(j, "bos_token_id", &c.bos_token_id, false));
  DSV3_RETURN_IF_ERROR(ReadInt(j, "eos_token_id", &c.eos_token_id, false));
  DSV3_RETURN_IF_ERROR(ReadBool(j, "tie_word_embeddings", &c.tie_word_embeddings));

  if (auto it = j.find("rope_scaling"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) return InvalidArgument(kSub, "rope_scaling must be an object or null");
    std::string type;
    DSV3_RETURN_IF_ERROR(ReadString(*it, "type", &type));
    if (type.empty()) DSV3_RETURN_IF_ERROR(ReadString(*it, "rope_type", &type));
    if (type == "yarn") {
      c.rope_scaling.yarn = true;
      DSV3_RETURN_IF_ERROR(ReadDouble(*it, "factor", &c.rope_scaling.factor, true));
      DSV3_RETURN_IF_ERROR(ReadInt(*it, "original_max_position_embeddings",
                                   &c.rope_scaling.original_max_position_embeddings, true));
      DSV3_RETURN_IF_ERROR(ReadDouble(*it, "beta_fast", &c.rope_scaling.beta_fast, false));
      DSV3_RETURN_IF_ERROR(ReadDouble(*it, "beta_slow", &c.rope_scaling.beta_slow, false));
      DSV3_RETURN_IF_ERROR(ReadDouble(*it, "mscale", &c.rope_scaling.mscale, false));
      DSV3_RETURN_IF_ERROR(ReadDouble(*it, "mscale_all_dim", &c.rope_scaling.mscale_all_dim, false));
    } else if (!type.empty() && type != "default") {
      return InvalidArgument(kSub, StrCat("unsupported rope_scaling type '", type,
                                                "' (supported: yarn)"));
    }
  }

  if (auto it = j.find("quantization_config"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) return InvalidArgument(kSub, "quantization_config must be an object");
    std::string method, fmt = "e4m3", scale_fmt;
    DSV3_RETURN_IF_ERROR(ReadString(*it, "quant_method", &method));
    DSV3_RETURN_IF_ERROR(ReadString(*it, "fmt", &fmt));
    DSV3_RETURN_IF_ERROR(ReadString(*it, "scale_fmt", &scale_fmt));
    if (method != "fp8") {
      return InvalidArgument(kSub, StrCat("unsupported quant_method '", method, "' (supported: fp8)"));
    }
    if (fmt != "e4m3") return InvalidArgument(kSub, StrCat("unsupported fp8 fmt '", fmt, "'"));
    if (!scale_fmt.empty() && scale_fmt != "ue8m0") {
      return InvalidArgument(kSub, StrCat("unsupported scale_fmt '", scale_fmt, "'"));
    }
    c.quantization.fp8 = true;
    c.quantization.scale_ue8m0 = scale_fmt == "ue8m0";
    if (auto bs = it->find("weight_block_size"); bs != it->end()) {
      if (!bs->is_array() || bs->size() != 2 || !(*bs)[0].is_number_integer() ||
          !(*bs)[1].is_number_integer()) {
        return InvalidArgument(kSub, "weight_block_size must be [rows, cols]");
      }
      c.quantization.block_rows = (*bs)[0].get<int64_t>();
      c.quantization.block_cols = (*bs)[1].get<int64_t>();
    }
  }
  DSV3_RETURN_IF_ERROR(c.Validate());
  return c;
}

Status ModelConfig::Validate() const {
  auto positive = [](const char* name, int64_t v) -> Status {
    if (v <= 0) return InvalidArgument(kSub, StrCat(name, " must be > 0, got ", v));
    return absl::OkStatus();
  };
  DSV3_RETURN_IF_ERROR(positive("vocab_size", vocab_size));
  DSV3_RETURN_IF_ERROR(positive("hidden_size", hidden_size));
  DSV3_RETURN_IF_ERROR(positive("num_hidden_layers", num_hidden_layers));
  DSV3_RETURN_IF_ERROR(positive("num_attention_heads", num_attention_heads));
  DSV3_RETURN_IF_ERROR(positive("kv_lora_rank", kv_lora_rank));
  DSV3_RETURN_IF_ERROR(positive("qk_nope_head_dim", qk_nope_head_dim));
  DSV3_RETURN_IF_ERROR(positive("v_head_dim", v_head_dim));
  DSV3_RETURN_IF_ERROR(positive("max_position_embeddings", max_position_embeddings));
  DSV3_RETURN_IF_ERROR(positive("moe_layer_freq", moe_layer_freq));
  if (qk_rope_head_dim <= 0 || qk_rope_head_dim % 2 != 0) {
    return InvalidArgument(kSub, "qk_rope_head_dim must be a positive even number");
  }
  if (q_lora_rank < 0) return InvalidArgument(kSub, "q_lora_rank must be >= 0 or null");
  if (num_key_value_heads != num_attention_heads) {
    return InvalidArgument(kSub, "MLA requires num_key_value_heads == num_attention_heads");
  }
  if (first_k_dense_replace < num_hidden_layers || n_routed_experts > 0) {
    // A model with any MoE layer needs a consistent expert configuration.
    bool any_moe = false;
    for (int64_t l = 0; l < num_hidden_layers; ++l) any_moe |= IsMoeLayer(l);
    if (any_moe) {
      DSV3_RETURN_IF_ERROR(positive("moe_intermediate_size", moe_intermediate_size));
      DSV3_RETURN_IF_ERROR(positive("num_experts_per_tok", num_experts_per_tok));
      DSV3_RETURN_IF_ERROR(positive("n_group", n_group));
      if (num_experts_per_tok > n_routed_experts) {
        return InvalidArgument(kSub, "num_experts_per_tok exceeds n_routed_experts");
      }
      if (n_routed_experts % n_group != 0) {
        return InvalidArgument(kSub, "n_routed_experts must be divisible by n_group");
      }
      if (topk_group <= 0 || topk_group > n_group) {
        return InvalidArgument(kSub, "topk_group must be in [1, n_group]");
      }
      if (topk_method != TopkMethod::kGreedy &&
          topk_group * (n_routed_experts / n_group) < num_experts_per_tok) {
        return InvalidArgument(kSub, "topk_group groups hold fewer experts than num_experts_per_tok");
      }
      if (topk_method == TopkMethod::kNoauxTc && n_routed_experts / n_group < 2) {
        return InvalidArgument(kSub, "noaux_tc needs at least 2 experts per group");
      }
    }
  }
  if (intermediate_size <= 0 && first_k_dense_replace > 0) {
    return InvalidArgument(kSub, "intermediate_size must be > 0 for dense layers");
  }
  if (rms_norm_eps <= 0) return InvalidArgument(kSub, "rms_norm_eps must be > 0");
  if (rope_theta <= 0) return InvalidArgument(kSub, "rope_theta must be > 0");
  if (rope_scaling.yarn && (rope_scaling.factor < 1.0 ||
                            rope_scaling.original_max_position_embeddings <= 0)) {
    return InvalidArgument(kSub, "yarn rope_scaling needs factor >= 1 and original_max_position_embeddings > 0");
  }
  if (quantization.fp8 && (quantization.block_rows <= 0 || quantization.block_cols <= 0)) {
    return InvalidArgument(kSub, "weight_block_size entries must be > 0");
  }
  if (bos_token_id < 0 || bos_token_id >= vocab_size || eos_token_id < 0 || eos_token_id >= vocab_size) {
    return InvalidArgument(kSub, "bos_token_id/eos_token_id outside the vocabulary");
  }
  return absl::OkStatus();
}

StatusOr<ModelConfig> ModelConfig::FromFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(kSub, StrCat("cannot open ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  json j = json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidArgument(kSub, StrCat(path, ": malformed JSON"));
  auto c = FromJson(j);
  if (!c.ok()) {
    return absl::Status(c.status().code(), StrCat(path, ": ", c.status().message()));
  }
  return c;
}

json ModelConfig::ToJson() const {
  json j;
  const bool v3 = model_type == "deepseek_v3";
  j["architectures"] = {v3 ? "DeepseekV3ForCausalLM" : "DeepseekV2ForCausalLM"};
  j["model_type"] = model_type;
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["moe_intermediate_size"] = moe_intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["n_routed_experts"] = n_routed_experts;
  j["n_shared_experts"] = n_shared_experts;
  j["num_experts_per_tok"] = num_experts_per_tok;
  j["n_group"] = n_group;
  j["topk_group"] = topk_group;
  j["topk_method"] = topk_method == TopkMethod::kNoauxTc              ? "noaux_tc"
                     : topk_method == TopkMethod::kGroupLimitedGreedy ? "group_limited_greedy"
                                                                      : "greedy";
  j["scoring_func"] = scoring_func == ScoringFunc::kSigmoid ? "sigmoid" : "softmax";
  j["norm_topk_prob"] = norm_topk_prob;
  j["routed_scaling_factor"] = routed_scaling_factor;
  j["first_k_dense_replace"] = first_k_dense_replace;
  j["moe_layer_freq"] = moe_layer_freq;
  if (q_lora_rank > 0) {
    j["q_lora_rank"] = q_lora_rank;
  } else {
    j["q_lora_rank"] = nullptr;
  }
  j["kv_lora_rank"] = kv_lora_rank;
  j["qk_nope_head_dim"] = qk_nope_head_dim;
  j["qk_rope_head_dim"] = qk_rope_head_dim;
  j["v_head_dim"] = v_head_dim;
  j["rope_theta"] = rope_theta;
  if (rope_scaling.yarn) {
    j["rope_scaling"] = {{"type", "yarn"},
                         {"factor", rope_scaling.factor},
                         {"original_max_position_embeddings", rope_scaling.original_max_position_embeddings},
                         {"beta_fast", rope_scaling.beta_fast},
                         {"beta_slow", rope_scaling.beta_slow},
                         {"mscale", rope_scaling.mscale},
                         {"mscale_all_dim", rope_scaling.mscale_all_dim}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["max_position_embeddings"] = max_position_embeddings;
  j["rms_norm_eps"] = rms_norm_eps;
  j["num_nextn_predict_layers"] = num_nextn_predict_layers;
  j["bos_token_id"] = bos_token_id;
  j["eos_token_id"] = eos_token_id;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["hidden_act"] = "silu";
  j["attention_bias"] = false;
  j["torch_dtype"] = "bfloat16";
  if (quantization.fp8) {
    json q = {{"activation_scheme", "dynamic"},
              {"fmt", "e4m3"},
              {"quant_method", "fp8"},
              {"weight_block_size", {quantization.block_rows, quantization.block_cols}}};
    if (quantization.scale_ue8m0) q["scale_fmt"] = "ue8m0";
    j["quantization_config"] = q;
  }
  return j;
}

std::string ModelConfig::Fingerprint() const {
  // FNV-1a: stable across processes and builds.
  const std::string s = ToJson().dump();
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  static const char* kHex = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, h >>= 4) out[i] = kHex[h & 15];
  return out;
}

double ModelConfig::SoftmaxScale() const {
  double s = 1.0 / std::sqrt(static_cast<double>(qk_head_dim()));
  if (rope_scaling.yarn) {
    double m = YarnGetMscale(rope_scaling.factor, rope_scaling.mscale_all_dim);
    s *= m * m;
  }
  return s;
}

float ModelConfig::RopeAttentionFactor() const {
  if (!rope_scaling.yarn) return 1.0f;
  return static_cast<float>(YarnGetMscale(rope_scaling.factor, rope_scaling.mscale) /
                            YarnGetMscale(rope_scaling.factor, rope_scaling.mscale_all_dim));
}

std::vector<float> ModelConfig::RopeInvFreq() const {
  // Mirrors the official precompute_freqs_cis step by step in float32 so the angles agree
  // bit for bit wherever powf agrees with torch.pow.
  const int64_t dim = qk_rope_head_dim;
  const int64_t half = dim / 2;
  std::vector<float> freqs(half);
  const float base = static_cast<float>(rope_theta);
  for (int64_t i = 0; i < half; ++i) {
    float e = static_cast<float>(2 * i) / static_cast<float>(dim);
    freqs[i] = 1.0f / std::pow(base, e);
  }
  if (!rope_scaling.yarn) return freqs;
  auto correction_dim = [&](double rotations) {
    return dim * std::log(rope_scaling.original_max_position_embeddings / (rotations * 2 * M_PI)) /
           (2 * std::log(rope_theta));
  };
  double low = std::floor(correction_dim(rope_scaling.beta_fast));
  double high = std::ceil(correction_dim(rope_scaling.beta_slow));
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dim - 1));
  if (low == high) high += 0.001;
  const float factor = static_cast<float>(rope_scaling.factor);
  for (int64_t i = 0; i < half; ++i) {
    float ramp = (static_cast<float>(i) - static_cast<float>(low)) /
                 (static_cast<float>(high) - static_cast<float>(low));
    ramp = std::min(std::max(ramp, 0.0f), 1.0f);
    float smooth = 1.0f - ramp;
    freqs[i] = freqs[i] / factor * (1.0f - smooth) + freqs[i] * smooth;
  }
  return freqs;
}

}  // namespace dsv3
