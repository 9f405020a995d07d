#include "tools/mkmodel/random_checkpoint.h"

#include "kernels/number_formats.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include <nlohmann/json.hpp>

#include "absl/strings/str_split.h"

namespace dsv3 {
namespace {

using nlohmann::json;
constexpr char kSub[] = "mkmodel";
namespace fs = std::filesystem;

// ---- PRNG -------------------------------------------------------------------------------

uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t Fnv1a64(std::string_view s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001B3ull;
  }
  return h;
}

class Xoshiro256 {
 public:
  explicit Xoshiro256(uint64_t seed) {
    for (auto& w : s_) w = SplitMix64(&seed);
  }
  uint64_t Next() {
    const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return result;
  }

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

// Elements per independent stream: fixed, so results never depend on how work is split.
constexpr int64_t kChunk = 1 << 16;

uint64_t StreamSeed(uint64_t seed, std::string_view name, int64_t chunk) {
  uint64_t s = seed;
  uint64_t a = SplitMix64(&s) ^ Fnv1a64(name);
  uint64_t b = SplitMix64(&a) + static_cast<uint64_t>(chunk);
  return SplitMix64(&b);
}

// Standard normals by Box-Muller (both outputs used): portable, unlike
// std::normal_distribution whose algorithm is implementation-defined.
void FillNormal(float* out, int64_t n, double stddev, uint64_t seed, std::string_view name) {
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    Xoshiro256 rng(StreamSeed(seed, name, c0 / kChunk));
    const int64_t end = std::min(n, c0 + kChunk);
    for (int64_t i = c0; i < end; i += 2) {
      const double u1 = static_cast<double>((rng.Next() >> 11) + 1) * 0x1.0p-53;  // (0, 1]
      const double u2 = static_cast<double>(rng.Next() >> 11) * 0x1.0p-53;        // [0, 1)
      const double r = std::sqrt(-2.0 * std::log(u1)) * stddev;
      const double t = kTwoPi * u2;
      out[i] = static_cast<float>(r * std::cos(t));
      if (i + 1 < end) out[i + 1] = static_cast<float>(r * std::sin(t));
    }
  }
}

std::string Layer(int64_t l) { return StrCat("model.layers.", l, "."); }

}  // namespace

// ---- Number formats -----------------------------------------------------------------------

uint16_t FloatToBf16(float f) { return kernels::F32ToBf16(f); }
float Bf16ToFloat(uint16_t b) { return kernels::Bf16ToF32(b); }

uint8_t FloatToE4M3(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  bits &= 0x7FFFFFFFu;
  if (bits > 0x7F800000u) return 0;  // NaN -> +0 (never emit a NaN code)
  float a;
  std::memcpy(&a, &bits, 4);
  // Everything from 448 up rounds (or saturates) to 448: (448, 464) rounds down, 464 is a
  // tie that goes to the even mantissa (448), and beyond would be NaN in e4m3fn.
  if (a >= 448.0f) return sign | 0x7E;
  if (a < 0x1.0p-6f) {
    // Subnormal range: code = a / 2^-9 rounded half to even (exact: scaling by 2^9 and
    // subtracting the floor of a value below 8 lose nothing). 8 is the smallest normal.
    const float q = a * 512.0f;
    const float fl = std::floor(q);
    const float frac = q - fl;
    uint32_t m = static_cast<uint32_t>(fl);
    if (frac > 0.5f || (frac == 0.5f && (m & 1u))) ++m;
    return sign | static_cast<uint8_t>(m);
  }
  // Normal range: round the fp32 mantissa to 3 bits, half to even; a carry bumps the
  // exponent naturally. Then rebias the exponent from 127 to 7.
  const uint32_t r = (bits + 0x7FFFFu + ((bits >> 20) & 1u)) >> 20;
  return sign | static_cast<uint8_t>(r - ((127u - 7u) << 3));
}

float E4M3ToFloat(uint8_t code) { return kernels::E4m3ToF32(code); }

// ---- Configs ------------------------------------------------------------------------------

StatusOr<ModelConfig> PresetConfig(std::string_view preset, bool fp8) {
  ModelConfig c;
  c.model_type = "deepseek_v3";
  c.vocab_size = 129280;
  c.n_routed_experts = 256;
  c.n_shared_experts = 1;
  c.num_experts_per_tok = 8;
  c.n_group = 8;
  c.topk_group = 4;
  c.topk_method = TopkMethod::kNoauxTc;
  c.scoring_func = ScoringFunc::kSigmoid;
  c.norm_topk_prob = true;
  c.routed_scaling_factor = 2.5;
  c.first_k_dense_replace = 1;
  c.moe_layer_freq = 1;
  c.rope_theta = 10000;
  c.rope_scaling.yarn = true;
  c.rope_scaling.factor = 40;
  c.rope_scaling.original_max_position_embeddings = 4096;
  c.rope_scaling.beta_fast = 32;
  c.rope_scaling.beta_slow = 1;
  c.rope_scaling.mscale = 1.0;
  c.rope_scaling.mscale_all_dim = 1.0;
  c.max_position_embeddings = 163840;
  c.rms_norm_eps = 1e-6;
  c.num_nextn_predict_layers = 0;
  c.bos_token_id = 0;
  c.eos_token_id = 1;
  c.tie_word_embeddings = false;
  if (preset == "tiny") {
    c.hidden_size = 32;
    c.num_hidden_layers = 3;
    c.intermediate_size = 192;
    c.moe_intermediate_size = 32;
    c.num_attention_heads = 4;
    c.q_lora_rank = 48;
    c.kv_lora_rank = 32;
    c.qk_nope_head_dim = 16;
    c.qk_rope_head_dim = 64;
    c.v_head_dim = 16;
  } else if (preset == "bench-s") {
    c.hidden_size = 512;
    c.num_hidden_layers = 8;
    c.intermediate_size = 1536;
    c.moe_intermediate_size = 128;
    c.num_attention_heads = 8;
    c.q_lora_rank = 192;
    c.kv_lora_rank = 128;
    c.qk_nope_head_dim = 64;
    c.qk_rope_head_dim = 64;
    c.v_head_dim = 64;
  } else {
    return InvalidArgument(kSub, StrCat("unknown preset '", std::string(preset), "' (known: tiny, bench-s)"));
  }
  c.num_key_value_heads = c.num_attention_heads;
  if (fp8) {
    c.quantization.fp8 = true;
    c.quantization.block_rows = 128;
    c.quantization.block_cols = 128;
  }
  DSV3_RETURN_IF_ERROR(c.Validate());
  return c;
}

Status ApplyConfigOverride(json* config, std::string_view key_eq_value) {
  const std::string kv(key_eq_value);  // std::string: StrCat may not take std::string_view
  const size_t eq = key_eq_value.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return InvalidArgument(kSub, StrCat("override '", kv, "' is not key=value"));
  }
  const std::string key(key_eq_value.substr(0, eq));
  const std::string text(key_eq_value.substr(eq + 1));
  json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) value = text;  // bare words are strings: --set topk_method=greedy

  std::vector<std::string> path = absl::StrSplit(key, '.');
  for (const auto& p : path) {
    if (p.empty()) return InvalidArgument(kSub, StrCat("override key '", key, "' has an empty part"));
  }
  if (!config->is_object()) return InvalidArgument(kSub, "config is not a JSON object");
  if (!config->contains(path[0]) && path[0] != "quantization_config") {
    return InvalidArgument(kSub, StrCat("unknown config key '", path[0], "' in override '", kv, "'"));
  }
  json* node = config;
  for (size_t i = 0; i + 1 < path.size(); ++i) {
    json& child = (*node)[path[i]];
    if (child.is_null()) child = json::object();
    if (!child.is_object()) {
      return InvalidArgument(kSub, StrCat("override '", kv, "': '", path[i],
                                                "' is not an object"));
    }
    node = &child;
  }
  (*node)[path.back()] = std::move(value);
  return absl::OkStatus();
}

// ---- Weights ------------------------------------------------------------------------------

std::vector<WeightSpec> ModelWeightSpecs(const ModelConfig& c) {
  std::vector<WeightSpec> v;
  const int64_t h = c.hidden_size;
  auto linear = [&](std::string name, int64_t out, int64_t in, double gain) {
    v.push_back({std::move(name), {out, in}, WeightKind::kLinear, gain, true});
  };
  auto norm = [&](std::string name, int64_t n) {
    v.push_back({std::move(name), {n}, WeightKind::kNorm, 1.0, false});
  };
  auto mlp = [&](const std::string& prefix, int64_t inter, double down_gain) {
    linear(prefix + "gate_proj.weight", inter, h, 1.0);
    linear(prefix + "up_proj.weight", inter, h, 1.0);
    linear(prefix + "down_proj.weight", h, inter, down_gain);
  };
  v.push_back({"model.embed_tokens.weight", {c.vocab_size, h}, WeightKind::kEmbedding, 1.0, false});
  const int64_t heads = c.num_attention_heads;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = Layer(l);
    norm(p + "input_layernorm.weight", h);
    if (c.q_lora_rank > 0) {
      linear(p + "self_attn.q_a_proj.weight", c.q_lora_rank, h, 1.0);
      norm(p + "self_attn.q_a_layernorm.weight", c.q_lora_rank);
      linear(p + "self_attn.q_b_proj.weight", heads * c.qk_head_dim(), c.q_lora_rank, 1.2);
    } else {
      linear(p + "self_attn.q_proj.weight", heads * c.qk_head_dim(), h, 1.2);
    }
    linear(p + "self_attn.kv_a_proj_with_mqa.weight", c.kv_lora_rank + c.qk_rope_head_dim, h, 1.2);
    norm(p + "self_attn.kv_a_layernorm.weight", c.kv_lora_rank);
    linear(p + "self_attn.kv_b_proj.weight", heads * (c.qk_nope_head_dim + c.v_head_dim),
           c.kv_lora_rank, 1.0);
    linear(p + "self_attn.o_proj.weight", h, heads * c.v_head_dim, 0.8);
    norm(p + "post_attention_layernorm.weight", h);
    if (!c.IsMoeLayer(l)) {
      mlp(p + "mlp.", c.intermediate_size, 1.2);
      continue;
    }
    v.push_back({p + "mlp.gate.weight", {c.n_routed_experts, h}, WeightKind::kRouter, 1.5, false});
    if (c.topk_method == TopkMethod::kNoauxTc) {
      v.push_back({p + "mlp.gate.e_score_correction_bias", {c.n_routed_experts},
                   WeightKind::kRouterBias, 1.0, false});
    }
    for (int64_t e = 0; e < c.n_routed_experts; ++e) {
      mlp(StrCat(p, "mlp.experts.", e, "."), c.moe_intermediate_size, 1.45);
    }
    if (c.n_shared_experts > 0) {
      mlp(p + "mlp.shared_experts.", c.moe_intermediate_size * c.n_shared_experts, 1.2);
    }
  }
  norm("model.norm.weight", h);
  if (!c.tie_word_embeddings) {
    v.push_back({"lm_head.weight", {c.vocab_size, h}, WeightKind::kLmHead, 2.5, false});
  }
  return v;
}

std::vector<float> GenerateWeight(const WeightSpec& spec, const ModelConfig& cfg, uint64_t seed) {
  int64_t n = 1;
  for (int64_t d : spec.shape) n *= d;
  std::vector<float> w(static_cast<size_t>(n));
  const double fan_in = spec.shape.size() == 2 ? static_cast<double>(spec.shape[1]) : 1.0;
  switch (spec.kind) {
    case WeightKind::kEmbedding:
      FillNormal(w.data(), n, 0.01, seed, spec.name);
      break;
    case WeightKind::kRouterBias:
      FillNormal(w.data(), n, 0.01, seed, spec.name);
      break;
    case WeightKind::kNorm:
      FillNormal(w.data(), n, 0.1, seed, spec.name);
      for (float& x : w) x += 1.0f;
      break;
    case WeightKind::kLinear:
    case WeightKind::kRouter:
      FillNormal(w.data(), n, spec.gain / std::sqrt(fan_in), seed, spec.name);
      break;
    case WeightKind::kLmHead: {
      FillNormal(w.data(), n, spec.gain / std::sqrt(fan_in), seed, spec.name);
      // Special / unused ids of the DeepSeek vocabulary (BOS/EOS/pad, >= 128000) get 10x
      // smaller rows, as in the oracle, so greedy text stays ordinary tokens.
      const int64_t cols = spec.shape[1];
      for (int64_t r = 0; r < spec.shape[0]; ++r) {
        if (r < 3 || (r >= 128000 && cfg.vocab_size > 128000)) {
          for (int64_t j = 0; j < cols; ++j) w[r * cols + j] *= 0.1f;
        }
      }
      break;
    }
  }
  return w;
}

void QuantizeFp8Blockwise(const float* w, int64_t rows, int64_t cols, int64_t br, int64_t bc,
                          bool ue8m0, uint8_t* codes, float* scale_inv) {
  const int64_t nbr = (rows + br - 1) / br, nbc = (cols + bc - 1) / bc;
  for (int64_t bi = 0; bi < nbr; ++bi) {
    for (int64_t bj = 0; bj < nbc; ++bj) {
      const int64_t r0 = bi * br, r1 = std::min(rows, r0 + br);
      const int64_t c0 = bj * bc, c1 = std::min(cols, c0 + bc);
      float amax = 0;
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t j = c0; j < c1; ++j) amax = std::max(amax, std::fabs(w[r * cols + j]));
      }
      float scale = amax / 448.0f;
      if (ue8m0 && scale > 0) {
        int e;
        const float m = std::frexp(scale, &e);  // scale = m * 2^e, m in [0.5, 1)
        scale = std::ldexp(1.0f, m == 0.5f ? e - 1 : e);
      }
      if (!(scale > 0)) scale = 1.0f;  // all-zero block: any scale gives zero codes
      scale_inv[bi * nbc + bj] = scale;
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t j = c0; j < c1; ++j) codes[r * cols + j] = FloatToE4M3(w[r * cols + j] / scale);
      }
    }
  }
}

std::vector<TensorToWrite> RandomCheckpointTensors(const ModelConfig& config, uint64_t seed) {
  std::vector<TensorToWrite> out;
  // The fills run later, inside the writer: they share one copy of the config.
  auto cfgp = std::make_shared<const ModelConfig>(config);
  const ModelConfig& cfg = *cfgp;
  const bool fp8 = cfg.quantization.fp8;
  const int64_t br = cfg.quantization.block_rows, bc = cfg.quantization.block_cols;
  const bool ue8m0 = cfg.quantization.scale_ue8m0;
  for (const WeightSpec& spec0 : ModelWeightSpecs(cfg)) {
    auto spec = std::make_shared<WeightSpec>(spec0);
    auto check = [spec](uint64_t n, uint64_t elem) -> Status {
      uint64_t want = elem;
      for (int64_t d : spec->shape) want *= static_cast<uint64_t>(d);
      if (n != want) return Internal(kSub, StrCat("fill of ", n, " bytes, expected ", want));
      return absl::OkStatus();
    };
    if (spec->kind == WeightKind::kRouterBias) {
      out.push_back({spec->name, DType::kF32, spec->shape,
                     [spec, cfgp, seed, check](uint8_t* dst, uint64_t n) -> Status {
                       DSV3_RETURN_IF_ERROR(check(n, 4));
                       const std::vector<float> w = GenerateWeight(*spec, *cfgp, seed);
                       std::memcpy(dst, w.data(), n);
                       return absl::OkStatus();
                     }});
    } else if (fp8 && spec->quantizable) {
      const int64_t rows = spec->shape[0], cols = spec->shape[1];
      const int64_t nbr = (rows + br - 1) / br, nbc = (cols + bc - 1) / bc;
      // The scale is regenerated from the same stream rather than cached: the writer emits
      // all F32 scales of a shard before its FP8 codes, and caching would hold the shard.
      out.push_back({spec->name, DType::kF8E4M3, spec->shape,
                     [=](uint8_t* dst, uint64_t n) -> Status {
                       DSV3_RETURN_IF_ERROR(check(n, 1));
                       const std::vector<float> w = GenerateWeight(*spec, *cfgp, seed);
                       std::vector<float> scales(nbr * nbc);
                       QuantizeFp8Blockwise(w.data(), rows, cols, br, bc, ue8m0, dst, scales.data());
                       return absl::OkStatus();
                     }});
      out.push_back({spec->name + "_scale_inv", DType::kF32, {nbr, nbc},
                     [=](uint8_t* dst, uint64_t n) -> Status {
                       if (n != static_cast<uint64_t>(nbr * nbc) * 4) {
                         return Internal(kSub, "scale fill size mismatch");
                       }
                       const std::vector<float> w = GenerateWeight(*spec, *cfgp, seed);
                       std::vector<uint8_t> codes(w.size());
                       std::vector<float> scales(nbr * nbc);
                       QuantizeFp8Blockwise(w.data(), rows, cols, br, bc, ue8m0, codes.data(), scales.data());
                       std::memcpy(dst, scales.data(), n);
                       return absl::OkStatus();
                     }});
    } else {
      out.push_back({spec->name, DType::kBF16, spec->shape,
                     [spec, cfgp, seed, check](uint8_t* dst, uint64_t n) -> Status {
                       DSV3_RETURN_IF_ERROR(check(n, 2));
                       const std::vector<float> w = GenerateWeight(*spec, *cfgp, seed);
                       for (size_t i = 0; i < w.size(); ++i) {
                         const uint16_t b = FloatToBf16(w[i]);
                         std::memcpy(dst + 2 * i, &b, 2);
                       }
                       return absl::OkStatus();
                     }});
    }
  }
  return out;
}

StatusOr<RandomCheckpointResult> WriteRandomCheckpoint(const std::string& dir,
                                                       const json& config_json, uint64_t seed,
                                                       int num_shards) {
  DSV3_ASSIGN_OR_RETURN(ModelConfig cfg, ModelConfig::FromJson(config_json));
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Internal(kSub, StrCat(dir, ": cannot create directory: ", ec.message()));
  auto write_json = [&](const std::string& file, const json& j) -> Status {
    const std::string path = (fs::path(dir) / file).string();
    std::ofstream o(path, std::ios::binary | std::ios::trunc);
    o << j.dump(2) << "\n";
    o.close();
    if (!o) return Internal(kSub, StrCat(path, ": write failed"));
    return absl::OkStatus();
  };
  DSV3_RETURN_IF_ERROR(write_json("config.json", config_json));
  DSV3_RETURN_IF_ERROR(write_json("generation_config.json",
                                  json{{"_from_model_config", true},
                                       {"bos_token_id", cfg.bos_token_id},
                                       {"eos_token_id", cfg.eos_token_id},
                                       {"do_sample", true},
                                       {"temperature", 0.6},
                                       {"top_p", 0.95}}));
  std::vector<TensorToWrite> tensors = RandomCheckpointTensors(cfg, seed);
  uint64_t total = 0;
  for (const auto& t : tensors) total += t.nbytes();
  if (num_shards <= 0) {
    const uint64_t per = 512ull << 20;
    num_shards = static_cast<int>(std::max<uint64_t>(2, (total + per - 1) / per));
  }
  num_shards = static_cast<int>(std::min<size_t>(num_shards, tensors.size()));
  DSV3_ASSIGN_OR_RETURN(ShardedWriteResult w, WriteShardedCheckpoint(dir, std::move(tensors), num_shards));
  RandomCheckpointResult r;
  r.config = cfg;
  r.num_params = w.num_params;
  r.total_size = w.total_size;
  r.file_bytes = w.file_bytes;
  r.num_shards = num_shards;
  return r;
}

}  // namespace dsv3
