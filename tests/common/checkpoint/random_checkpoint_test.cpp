// dsv3-mkmodel's library: exact BF16 / FP8 e4m3 rounding, blockwise quantization, config
// overrides, the Hugging Face tensor set, determinism from the seed and routing diversity.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/checkpoint/checkpoint.h"
#include "tests/common/checkpoint/test_util.h"
#include "tools/mkmodel/random_checkpoint.h"

namespace dsv3 {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

#ifndef DSV3_ORACLE_DIR
#define DSV3_ORACLE_DIR "../shared/oracle"
#endif
// The oracle fixtures (../shared/oracle next to the checkout); tests that compare with
// them skip when they are absent.
std::string OracleDir() {
  const char* env = std::getenv("DSV3_ORACLE_DIR");
  return env != nullptr ? env : DSV3_ORACLE_DIR;
}

// ---- e4m3 --------------------------------------------------------------------------------

bool IsE4M3Nan(uint8_t c) { return (c & 0x7F) == 0x7F; }

// Reference: the nearest finite e4m3 value by exhaustive search in double, ties to the
// even code (even mantissa), saturating at 448.
uint8_t ReferenceE4M3(float f) {
  if (std::isnan(f)) return 0;
  const double x = std::fabs(static_cast<double>(f));
  uint8_t best = 0;
  double best_d = INFINITY;
  for (int c = 0; c <= 0x7E; ++c) {
    const double d = std::fabs(static_cast<double>(E4M3ToFloat(static_cast<uint8_t>(c))) - x);
    if (d < best_d || (d == best_d && (c & 1) == 0)) {
      best_d = d;
      best = static_cast<uint8_t>(c);
    }
  }
  return static_cast<uint8_t>(best | (std::signbit(f) ? 0x80 : 0));
}

TEST(E4M3Test, DecodesKnownValues) {
  EXPECT_EQ(E4M3ToFloat(0x00), 0.0f);
  EXPECT_EQ(E4M3ToFloat(0x01), std::ldexp(1.0f, -9));   // smallest subnormal
  EXPECT_EQ(E4M3ToFloat(0x07), 7 * std::ldexp(1.0f, -9));
  EXPECT_EQ(E4M3ToFloat(0x08), std::ldexp(1.0f, -6));   // smallest normal
  EXPECT_EQ(E4M3ToFloat(0x38), 1.0f);
  EXPECT_EQ(E4M3ToFloat(0x7E), 448.0f);
  EXPECT_EQ(E4M3ToFloat(0xC0), -2.0f);
  EXPECT_TRUE(std::isnan(E4M3ToFloat(0x7F)));
  EXPECT_TRUE(std::isnan(E4M3ToFloat(0xFF)));
}

TEST(E4M3Test, EveryFiniteCodeRoundTrips) {
  for (int c = 0; c < 256; ++c) {
    if (IsE4M3Nan(static_cast<uint8_t>(c))) continue;
    EXPECT_EQ(FloatToE4M3(E4M3ToFloat(static_cast<uint8_t>(c))), c) << "code " << c;
  }
}

TEST(E4M3Test, MidpointsRoundToEvenAndNeighboursToNearest) {
  for (int c = 0; c < 0x7E; ++c) {
    const float lo = E4M3ToFloat(static_cast<uint8_t>(c)), hi = E4M3ToFloat(static_cast<uint8_t>(c + 1));
    const float mid = (lo + hi) / 2;  // exact: few significant bits
    ASSERT_EQ(static_cast<double>(mid), (static_cast<double>(lo) + hi) / 2);
    const int even = (c % 2 == 0) ? c : c + 1;
    EXPECT_EQ(FloatToE4M3(mid), even) << "midpoint " << mid;
    EXPECT_EQ(FloatToE4M3(std::nextafter(mid, 0.0f)), c) << mid;
    EXPECT_EQ(FloatToE4M3(std::nextafter(mid, 1e9f)), c + 1) << mid;
    EXPECT_EQ(FloatToE4M3(-mid), even | 0x80) << -mid;
  }
}

TEST(E4M3Test, SaturatesAndNeverEmitsNan) {
  EXPECT_EQ(FloatToE4M3(448.0f), 0x7E);
  EXPECT_EQ(FloatToE4M3(463.99f), 0x7E);
  EXPECT_EQ(FloatToE4M3(464.0f), 0x7E);  // tie between 448 and (NaN-coded) 480: even
  EXPECT_EQ(FloatToE4M3(1e30f), 0x7E);
  EXPECT_EQ(FloatToE4M3(INFINITY), 0x7E);
  EXPECT_EQ(FloatToE4M3(-INFINITY), 0xFE);
  EXPECT_EQ(FloatToE4M3(NAN), 0x00);
  EXPECT_EQ(FloatToE4M3(std::ldexp(1.0f, -10)), 0x00);          // half the smallest subnormal: tie to 0
  EXPECT_EQ(FloatToE4M3(std::ldexp(1.5f, -10)), 0x01);
  EXPECT_EQ(FloatToE4M3(std::ldexp(3.0f, -10)), 0x02);          // 1.5 subnormal steps: tie to even 2
  EXPECT_EQ(FloatToE4M3(std::ldexp(15.0f, -10)), 0x08);         // 7.5 steps -> smallest normal
  EXPECT_EQ(FloatToE4M3(1e-30f), 0x00);
  EXPECT_EQ(FloatToE4M3(-0.0f), 0x80);
}

TEST(E4M3Test, MatchesExhaustiveReferenceOnRandomFloats) {
  std::mt19937_64 rng(42);  // fixed engine: its output is specified by the standard
  for (int i = 0; i < 200000; ++i) {
    uint32_t bits = static_cast<uint32_t>(rng());
    // Concentrate on the e4m3 range: exponents 2^-12 .. 2^10.
    bits = (bits & 0x807FFFFFu) | ((115u + static_cast<uint32_t>(rng() % 23)) << 23);
    float f;
    std::memcpy(&f, &bits, 4);
    const uint8_t got = FloatToE4M3(f);
    ASSERT_EQ(got, ReferenceE4M3(f)) << "f=" << f;
    ASSERT_FALSE(IsE4M3Nan(got));
  }
}

// ---- bf16 --------------------------------------------------------------------------------

TEST(Bf16Test, RoundsHalfToEven) {
  auto from_bits = [](uint32_t b) {
    float f;
    std::memcpy(&f, &b, 4);
    return f;
  };
  EXPECT_EQ(FloatToBf16(1.0f), 0x3F80);
  EXPECT_EQ(FloatToBf16(from_bits(0x3F808000u)), 0x3F80);  // tie, even stays
  EXPECT_EQ(FloatToBf16(from_bits(0x3F818000u)), 0x3F82);  // tie, odd rounds up
  EXPECT_EQ(FloatToBf16(from_bits(0x3F808001u)), 0x3F81);
  EXPECT_EQ(FloatToBf16(from_bits(0x3F807FFFu)), 0x3F80);
  EXPECT_EQ(FloatToBf16(from_bits(0x7F7FFFFFu)), 0x7F80);  // rounds to +inf, as RNE must
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(NAN))));
  std::mt19937_64 rng(7);
  for (int i = 0; i < 100000; ++i) {
    const float f = from_bits(static_cast<uint32_t>(rng()) & 0xBFFFFFFFu);  // finite
    const uint16_t b = FloatToBf16(f);
    const double err = std::fabs(static_cast<double>(Bf16ToFloat(b)) - f);
    for (int d : {-1, 1}) {
      const double other = std::fabs(static_cast<double>(Bf16ToFloat(static_cast<uint16_t>(b + d))) - f);
      if (std::isnan(other)) continue;  // -0 - 1 wraps to a NaN code: not a neighbour
      ASSERT_TRUE(err < other || (err == other && (b & 1) == 0)) << f;
    }
  }
}

// ---- Blockwise quantization ---------------------------------------------------------------

TEST(QuantizeTest, PartialBlocksAndScales) {
  const int64_t rows = 130, cols = 200;
  std::vector<float> w(rows * cols);
  std::mt19937_64 rng(1);
  for (auto& x : w) x = static_cast<float>(static_cast<int64_t>(rng() % 20001) - 10000) * 1e-4f;
  w[129 * cols + 199] = 3.0f;  // the 2x72 corner block gets its own, larger scale
  std::vector<uint8_t> codes(rows * cols);
  std::vector<float> scales(2 * 2);
  QuantizeFp8Blockwise(w.data(), rows, cols, 128, 128, false, codes.data(), scales.data());
  EXPECT_EQ(scales[3], 3.0f / 448.0f);
  for (int64_t bi = 0; bi < 2; ++bi) {
    for (int64_t bj = 0; bj < 2; ++bj) {
      float amax_code = 0;
      for (int64_t r = bi * 128; r < std::min(rows, bi * 128 + 128); ++r) {
        for (int64_t c = bj * 128; c < std::min(cols, bj * 128 + 128); ++c) {
          const float deq = E4M3ToFloat(codes[r * cols + c]) * scales[bi * 2 + bj];
          // e4m3 keeps 3 mantissa bits: relative error <= 2^-4, plus the subnormal step.
          EXPECT_LE(std::fabs(deq - w[r * cols + c]),
                    std::fabs(w[r * cols + c]) / 16 + scales[bi * 2 + bj] * std::ldexp(1.0f, -10));
          amax_code = std::max(amax_code, std::fabs(E4M3ToFloat(codes[r * cols + c])));
        }
      }
      EXPECT_EQ(amax_code, 448.0f) << bi << "," << bj;
    }
  }
  // ue8m0: power-of-two scales, codes still finite and within 448.
  QuantizeFp8Blockwise(w.data(), rows, cols, 128, 128, true, codes.data(), scales.data());
  for (float s : scales) {
    int e;
    EXPECT_EQ(std::frexp(s, &e), 0.5f) << s;
  }
  for (uint8_t c : codes) EXPECT_FALSE(IsE4M3Nan(c));
}

// ---- Config -------------------------------------------------------------------------------

TEST(MkmodelConfigTest, PresetsMatchTheSpec) {
  auto tiny = PresetConfig("tiny", false);
  ASSERT_TRUE(tiny.ok()) << tiny.status();
  EXPECT_EQ(tiny->hidden_size, 32);
  EXPECT_EQ(tiny->q_lora_rank, 48);
  EXPECT_FALSE(tiny->quantization.fp8);
  auto bs = PresetConfig("bench-s", true);
  ASSERT_TRUE(bs.ok()) << bs.status();
  EXPECT_EQ(bs->hidden_size, 512);
  EXPECT_EQ(bs->num_hidden_layers, 8);
  EXPECT_EQ(bs->intermediate_size, 1536);
  EXPECT_EQ(bs->moe_intermediate_size, 128);
  EXPECT_EQ(bs->num_attention_heads, 8);
  EXPECT_EQ(bs->kv_lora_rank, 128);
  EXPECT_EQ(bs->rope_scaling.factor, 40);
  EXPECT_TRUE(bs->quantization.fp8);
  EXPECT_FALSE(PresetConfig("huge", false).ok());
  // The tiny preset is the oracle's model.
  const std::string oracle = OracleDir() + "/tiny-bf16/config.json";
  if (fs::exists(oracle)) {
    auto o = ModelConfig::FromFile(oracle);
    ASSERT_TRUE(o.ok()) << o.status();
    EXPECT_EQ(o->ToJson(), tiny->ToJson());
  }
}

TEST(MkmodelConfigTest, Overrides) {
  json j = PresetConfig("tiny", false)->ToJson();
  ASSERT_TRUE(ApplyConfigOverride(&j, "num_hidden_layers=5").ok());
  ASSERT_TRUE(ApplyConfigOverride(&j, "rope_scaling.factor=32").ok());
  ASSERT_TRUE(ApplyConfigOverride(&j, "q_lora_rank=null").ok());
  ASSERT_TRUE(ApplyConfigOverride(&j, "topk_method=greedy").ok());
  ASSERT_TRUE(ApplyConfigOverride(&j, "quantization_config.quant_method=fp8").ok());
  auto c = ModelConfig::FromJson(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_hidden_layers, 5);
  EXPECT_EQ(c->rope_scaling.factor, 32);
  EXPECT_EQ(c->q_lora_rank, 0);
  EXPECT_EQ(c->topk_method, TopkMethod::kGreedy);
  EXPECT_TRUE(c->quantization.fp8);
  EXPECT_EQ(ApplyConfigOverride(&j, "hiden_size=3").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(ApplyConfigOverride(&j, "hiden_size=3").message()).find("hiden_size"), std::string::npos);
  EXPECT_FALSE(ApplyConfigOverride(&j, "hidden_size").ok());
  EXPECT_FALSE(ApplyConfigOverride(&j, "vocab_size.x=1").ok());
  EXPECT_FALSE(ApplyConfigOverride(&j, "rope_scaling..factor=1").ok());
  ASSERT_TRUE(ApplyConfigOverride(&j, "n_group=7").ok());  // applies; validation rejects it
  EXPECT_FALSE(ModelConfig::FromJson(j).ok());
}

// ---- Tensor set ---------------------------------------------------------------------------

TEST(MkmodelTensorsTest, TinyFp8MatchesOracleLayout) {
  const std::string index = OracleDir() + "/tiny-fp8/model.safetensors.index.json";
  if (!fs::exists(index)) GTEST_SKIP() << "no oracle at " << index;
  std::ifstream in(index);
  json wm = json::parse(in)["weight_map"];
  std::set<std::string> want;
  for (auto it = wm.begin(); it != wm.end(); ++it) want.insert(it.key());
  std::set<std::string> got;
  for (const auto& t : RandomCheckpointTensors(*PresetConfig("tiny", true), 0)) got.insert(t.name);
  EXPECT_EQ(got, want);
}

TEST(MkmodelTensorsTest, VariantsWithoutQLoraOrBias) {
  ModelConfig c = *PresetConfig("tiny", false);
  c.q_lora_rank = 0;
  c.topk_method = TopkMethod::kGroupLimitedGreedy;
  c.n_shared_experts = 0;
  std::set<std::string> names;
  for (const auto& s : ModelWeightSpecs(c)) names.insert(s.name);
  EXPECT_TRUE(names.count("model.layers.0.self_attn.q_proj.weight"));
  EXPECT_FALSE(names.count("model.layers.0.self_attn.q_a_proj.weight"));
  EXPECT_FALSE(names.count("model.layers.1.mlp.gate.e_score_correction_bias"));
  EXPECT_FALSE(names.count("model.layers.1.mlp.shared_experts.up_proj.weight"));
  EXPECT_TRUE(names.count("model.layers.2.mlp.experts.255.down_proj.weight"));
}

// ---- Whole checkpoints ---------------------------------------------------------------------

class MkmodelWriteTest : public testing_util::TempDirTest {
 protected:
  // A smaller tiny model (fewer experts) keeps the test fast; layout rules are unchanged.
  json SmallTiny(bool fp8) {
    json j = PresetConfig("tiny", fp8)->ToJson();
    EXPECT_TRUE(ApplyConfigOverride(&j, "n_routed_experts=64").ok());
    EXPECT_TRUE(ApplyConfigOverride(&j, "vocab_size=1000").ok());
    EXPECT_TRUE(ApplyConfigOverride(&j, "intermediate_size=300").ok());  // partial FP8 blocks
    return j;
  }
  std::map<std::string, std::string> Files(const std::string& dir) {
    std::map<std::string, std::string> m;
    for (const auto& e : fs::directory_iterator(dir)) {
      m[e.path().filename().string()] = testing_util::ReadFileBytes(e.path().string());
    }
    return m;
  }
};

TEST_F(MkmodelWriteTest, DeterministicFromSeed) {
  for (bool fp8 : {false, true}) {
    const std::string a = Path(fp8 ? "a8" : "a"), b = Path(fp8 ? "b8" : "b"), c = Path(fp8 ? "c8" : "c");
    ASSERT_TRUE(WriteRandomCheckpoint(a, SmallTiny(fp8), 11, 3).ok());
    ASSERT_TRUE(WriteRandomCheckpoint(b, SmallTiny(fp8), 11, 3).ok());
    ASSERT_TRUE(WriteRandomCheckpoint(c, SmallTiny(fp8), 12, 3).ok());
    const auto fa = Files(a), fb = Files(b), fc = Files(c);
    ASSERT_EQ(fa.size(), 6u);  // config, generation_config, index, 3 shards
    EXPECT_TRUE(fa == fb) << "same seed must give identical files";
    for (const auto& [name, bytes] : fa) {
      if (name.find(".safetensors") != std::string::npos && name.find("index") == std::string::npos) {
        EXPECT_NE(bytes, fc.at(name)) << name << " should differ between seeds";
      } else {
        EXPECT_EQ(bytes, fc.at(name)) << name;
      }
    }
  }
}

TEST_F(MkmodelWriteTest, LoadsWithExpectedDtypesAndShapes) {
  for (bool fp8 : {false, true}) {
    const std::string dir = Path(fp8 ? "fp8" : "bf16");
    auto r = WriteRandomCheckpoint(dir, SmallTiny(fp8), 5, 2);
    ASSERT_TRUE(r.ok()) << r.status();
    auto ck = Checkpoint::Open(dir);
    ASSERT_TRUE(ck.ok()) << ck.status();
    const ModelConfig& cfg = (*ck)->config();
    EXPECT_EQ(cfg.quantization.fp8, fp8);
    std::vector<std::string> names = (*ck)->TensorNames();
    ASSERT_TRUE((*ck)->Load(names).ok());
    uint64_t params = 0;
    size_t expected_tensors = 0;
    for (const auto& spec : ModelWeightSpecs(cfg)) {
      const bool q = fp8 && spec.quantizable;
      const DType want = spec.kind == WeightKind::kRouterBias ? DType::kF32 : q ? DType::kF8E4M3 : DType::kBF16;
      auto v = (*ck)->Get(spec.name, {want}, spec.shape);
      ASSERT_TRUE(v.ok()) << v.status();
      params += v->numel();
      expected_tensors += q ? 2 : 1;
      if (q) {
        const std::vector<int64_t> ss = {(spec.shape[0] + 127) / 128, (spec.shape[1] + 127) / 128};
        auto s = (*ck)->Get(spec.name + "_scale_inv", {DType::kF32}, ss);
        ASSERT_TRUE(s.ok()) << s.status();
        params += s->numel();
        // The stored scale and codes reproduce the master weight within e4m3 precision.
        const std::vector<float> w = GenerateWeight(spec, cfg, 5);
        const auto* codes = static_cast<const uint8_t*>(v->data);
        const auto* scales = static_cast<const float*>(s->data);
        for (int64_t i = 0; i < spec.shape[0]; i += 7) {
          for (int64_t j = 0; j < spec.shape[1]; j += 3) {
            const float sc = scales[(i / 128) * ss[1] + j / 128];
            const float deq = E4M3ToFloat(codes[i * spec.shape[1] + j]) * sc;
            ASSERT_LE(std::fabs(deq - w[i * spec.shape[1] + j]),
                      std::fabs(w[i * spec.shape[1] + j]) / 16 + sc * std::ldexp(1.0f, -10));
          }
        }
      }
    }
    EXPECT_EQ(params, r->num_params);
    EXPECT_EQ(names.size(), expected_tensors);
  }
}

// Statistics that make the model useful for testing: unit-scale projections, norms near 1,
// embeddings at 0.01, and a router that spreads tokens over many experts.
TEST_F(MkmodelWriteTest, WeightStatisticsAndRoutingDiversity) {
  const ModelConfig cfg = *PresetConfig("tiny", false);
  const uint64_t seed = 9;
  for (const auto& spec : ModelWeightSpecs(cfg)) {
    if (spec.name.find("experts.") != std::string::npos && spec.name.find("experts.3.") == std::string::npos) continue;
    const std::vector<float> w = GenerateWeight(spec, cfg, seed);
    double sum = 0, sq = 0;
    for (float x : w) {
      sum += x;
      sq += static_cast<double>(x) * x;
    }
    const double n = static_cast<double>(w.size());
    const double mean = sum / n, sd = std::sqrt(sq / n - mean * mean);
    switch (spec.kind) {
      case WeightKind::kNorm:
        EXPECT_NEAR(mean, 1.0, 0.1) << spec.name;
        break;
      case WeightKind::kEmbedding:
        EXPECT_NEAR(sd, 0.01, 0.001) << spec.name;
        break;
      case WeightKind::kLinear:
      case WeightKind::kRouter:
        EXPECT_NEAR(sd * std::sqrt(static_cast<double>(spec.shape[1])), spec.gain, 0.15 * spec.gain)
            << spec.name;
        break;
      default:
        break;
    }
  }
  // Route 256 random unit-RMS inputs through layer 1's gate with the noaux_tc rule.
  WeightSpec gate, bias;
  for (const auto& s : ModelWeightSpecs(cfg)) {
    if (s.name == "model.layers.1.mlp.gate.weight") gate = s;
    if (s.name == "model.layers.1.mlp.gate.e_score_correction_bias") bias = s;
  }
  const std::vector<float> g = GenerateWeight(gate, cfg, seed), b = GenerateWeight(bias, cfg, seed);
  const int64_t h = cfg.hidden_size, e = cfg.n_routed_experts, per_group = e / cfg.n_group;
  std::mt19937_64 rng(3);
  std::normal_distribution<double> nd;  // only test inputs; exact values do not matter
  std::vector<int> hits(e, 0);
  for (int t = 0; t < 256; ++t) {
    std::vector<double> x(h);
    for (auto& v : x) v = nd(rng);
    std::vector<double> biased(e);
    for (int64_t i = 0; i < e; ++i) {
      double dot = 0;
      for (int64_t k = 0; k < h; ++k) dot += g[i * h + k] * x[k];
      biased[i] = 1 / (1 + std::exp(-dot)) + b[i];
    }
    std::vector<std::pair<double, int64_t>> groups;
    for (int64_t gi = 0; gi < cfg.n_group; ++gi) {
      std::vector<double> s(biased.begin() + gi * per_group, biased.begin() + (gi + 1) * per_group);
      std::sort(s.rbegin(), s.rend());
      groups.push_back({s[0] + s[1], gi});
    }
    std::sort(groups.rbegin(), groups.rend());
    std::vector<std::pair<double, int64_t>> cand;
    for (int64_t k = 0; k < cfg.topk_group; ++k) {
      for (int64_t i = 0; i < per_group; ++i) {
        const int64_t id = groups[k].second * per_group + i;
        cand.push_back({biased[id], id});
      }
    }
    std::sort(cand.rbegin(), cand.rend());
    for (int64_t k = 0; k < cfg.num_experts_per_tok; ++k) ++hits[cand[k].second];
  }
  const int used = static_cast<int>(std::count_if(hits.begin(), hits.end(), [](int c) { return c > 0; }));
  const int busiest = *std::max_element(hits.begin(), hits.end());
  EXPECT_GE(used, 200) << "of " << e << " experts";
  EXPECT_LE(busiest, 64) << "one expert takes a quarter of all tokens";
}

}  // namespace
}  // namespace dsv3
