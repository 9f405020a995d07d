// Random-weight DeepSeek-V3 checkpoints in the exact Hugging Face layout, deterministic from
// a seed. Used by dsv3-mkmodel, and in-process by tests and benchmarks.
//
// Determinism: every tensor draws from its own xoshiro256** streams seeded from (seed,
// tensor name, chunk index) and turned into normals by Box-Muller, so a tensor's values do
// not depend on shard layout, write order or which other tensors exist.
//
// Scales are chosen so a forward pass is well behaved, following the oracle tiny model:
// projections ~ N(0, gain^2 / fan_in) with gains near 1 (so each sub-layer maps unit-RMS
// input to O(1) output and the pre-norm residual stream grows only ~sqrt(layers)), norms
// 1 + N(0, 0.1^2), embeddings N(0, 0.01^2), a router with gain 1.5 (spread sigmoid scores:
// varied expert choices) and e_score_correction_bias N(0, 0.01^2), lm_head gain 2.5 with
// the rows of special / unused ids 10x smaller.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/checkpoint/safetensors_writer.h"
#include "common/config/model_config.h"
#include "common/status.h"

namespace dsv3 {

// ---- Number formats (exact, round-to-nearest-even) --------------------------------------

uint16_t FloatToBf16(float f);  // NaN stays a (quiet) NaN
float Bf16ToFloat(uint16_t b);
// e4m3fn: bias 7, no infinities, 0x7F/0xFF are NaN, max finite 448. Values beyond the
// finite range saturate to +-448 and NaN maps to +0, so no NaN code is ever produced.
uint8_t FloatToE4M3(float f);
float E4M3ToFloat(uint8_t code);

// ---- Configs ------------------------------------------------------------------------------

// "tiny" (the oracle tiny model) or "bench-s". `fp8` adds the 128x128 block quantization_config.
StatusOr<ModelConfig> PresetConfig(std::string_view preset, bool fp8);

// Applies one "key=value" override to a config.json object. Dotted keys reach into objects
// ("rope_scaling.factor=32"). The value is parsed as JSON when it is valid JSON (numbers,
// true, null, objects), otherwise taken as a string. The top-level key must be a known
// config key, so a typo is an error rather than a silently ignored field.
Status ApplyConfigOverride(nlohmann::json* config, std::string_view key_eq_value);

// ---- Weights ------------------------------------------------------------------------------

enum class WeightKind { kEmbedding, kNorm, kLinear, kRouter, kRouterBias, kLmHead };

struct WeightSpec {
  std::string name;  // e.g. "model.layers.1.mlp.experts.7.up_proj.weight"
  std::vector<int64_t> shape;
  WeightKind kind = WeightKind::kLinear;
  double gain = 1.0;         // std = gain / sqrt(fan_in) for kLinear / kRouter / kLmHead
  bool quantizable = false;  // stored as F8_E4M3 + weight_scale_inv under fp8 quantization
};

// Every tensor of the Hugging Face DeepSeek-V3/V2 layout for `cfg`, in model order.
// (Multi-token-prediction layers, num_nextn_predict_layers > 0, are not generated.)
std::vector<WeightSpec> ModelWeightSpecs(const ModelConfig& cfg);

// The float32 master values of one weight (before BF16 / FP8 storage rounding).
std::vector<float> GenerateWeight(const WeightSpec& spec, const ModelConfig& cfg, uint64_t seed);

// Blockwise FP8 quantization of a row-major [rows, cols] matrix: codes (rows*cols) and
// scale_inv ([ceil(rows/br), ceil(cols/bc)]), scale = amax(block)/448 (or its power-of-two
// ceiling with ue8m0), partial edge blocks covering only their real elements.
void QuantizeFp8Blockwise(const float* w, int64_t rows, int64_t cols, int64_t br, int64_t bc,
                          bool ue8m0, uint8_t* codes, float* scale_inv);

// Lazily generated tensors for the writer: BF16 everything, F32 router bias, and under fp8
// quantization F8_E4M3 projections each followed by its `<name>_scale_inv`.
std::vector<TensorToWrite> RandomCheckpointTensors(const ModelConfig& cfg, uint64_t seed);

struct RandomCheckpointResult {
  ModelConfig config;
  uint64_t num_params = 0;   // elements of all tensors (scales included)
  uint64_t total_size = 0;   // tensor bytes (the index's total_size)
  uint64_t file_bytes = 0;   // bytes written, all files
  int num_shards = 0;
};

// Validates `config_json` (ModelConfig::FromJson), then writes config.json,
// generation_config.json, the shards and the index into `dir`. num_shards 0 picks
// max(2, ceil(total / 512 MiB)), capped by the tensor count.
StatusOr<RandomCheckpointResult> WriteRandomCheckpoint(const std::string& dir,
                                                       const nlohmann::json& config_json,
                                                       uint64_t seed, int num_shards = 0);

}  // namespace dsv3
