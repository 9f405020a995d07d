#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/config/model_config.h"

namespace dsv3 {
namespace {

nlohmann::json V3Tiny() {
  return nlohmann::json::parse(R"({
    "model_type": "deepseek_v3", "vocab_size": 1000, "hidden_size": 32, "intermediate_size": 64,
    "moe_intermediate_size": 16, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 4,
    "n_routed_experts": 16, "n_shared_experts": 1, "num_experts_per_tok": 4, "n_group": 4, "topk_group": 2,
    "topk_method": "noaux_tc", "scoring_func": "sigmoid", "norm_topk_prob": true, "routed_scaling_factor": 2.5,
    "first_k_dense_replace": 1, "moe_layer_freq": 1, "q_lora_rank": 48, "kv_lora_rank": 32,
    "qk_nope_head_dim": 16, "qk_rope_head_dim": 64, "v_head_dim": 16, "rope_theta": 10000,
    "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096, "beta_fast": 32,
                     "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
    "max_position_embeddings": 163840, "rms_norm_eps": 1e-6, "bos_token_id": 0, "eos_token_id": 1,
    "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                            "weight_block_size": [128, 128], "scale_fmt": "ue8m0"}
  })");
}

TEST(ModelConfig, ParsesV3WithYarnAndFp8) {
  auto c = ModelConfig::FromJson(V3Tiny());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->rope_scaling.yarn);
  EXPECT_TRUE(c->quantization.fp8);
  EXPECT_TRUE(c->quantization.scale_ue8m0);
  EXPECT_FALSE(c->IsMoeLayer(0));
  EXPECT_TRUE(c->IsMoeLayer(1));
  EXPECT_EQ(c->latent_dim(), 96);
  // (16 + 64)^-0.5 * (0.1 ln 40 + 1)^2
  EXPECT_NEAR(c->SoftmaxScale(), 0.20950326934915403, 1e-12);
}

TEST(ModelConfig, RoundTripsThroughJson) {
  auto c = ModelConfig::FromJson(V3Tiny());
  ASSERT_TRUE(c.ok());
  auto d = ModelConfig::FromJson(c->ToJson());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->ToJson(), c->ToJson());
}

TEST(ModelConfig, V2DefaultsAndNullQLora) {
  auto j = V3Tiny();
  j["model_type"] = "deepseek_v2";
  j["q_lora_rank"] = nullptr;
  j.erase("topk_method");
  j.erase("scoring_func");
  j.erase("norm_topk_prob");
  j.erase("quantization_config");
  auto c = ModelConfig::FromJson(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->q_lora_rank, 0);
  EXPECT_EQ(c->scoring_func, ScoringFunc::kSoftmax);
  EXPECT_EQ(c->topk_method, TopkMethod::kGreedy);
  EXPECT_FALSE(c->norm_topk_prob);
}

TEST(ModelConfig, RejectsBadFieldsWithTheirNames) {
  struct Case {
    const char* key;
    nlohmann::json value;
    const char* expect;
  };
  for (const Case& k : {Case{"hidden_size", "32", "hidden_size"}, Case{"hidden_size", -1, "hidden_size"},
                        Case{"model_type", "llama", "model_type"}, Case{"topk_method", "magic", "topk_method"},
                        Case{"scoring_func", "relu", "scoring_func"}, Case{"qk_rope_head_dim", 63, "qk_rope_head_dim"},
                        Case{"num_experts_per_tok", 99, "num_experts_per_tok"}, Case{"n_group", 5, "n_group"},
                        Case{"topk_group", 9, "topk_group"}, Case{"norm_topk_prob", 1, "norm_topk_prob"}}) {
    auto j = V3Tiny();
    j[k.key] = k.value;
    auto c = ModelConfig::FromJson(j);
    ASSERT_FALSE(c.ok()) << k.key;
    EXPECT_NE(std::string(c.status().message()).find(k.expect), std::string::npos) << c.status();
  }
  auto j = V3Tiny();
  j.erase("vocab_size");
  EXPECT_FALSE(ModelConfig::FromJson(j).ok());
  j = V3Tiny();
  j["rope_scaling"]["type"] = "dynamic";
  EXPECT_FALSE(ModelConfig::FromJson(j).ok());
  j = V3Tiny();
  j["quantization_config"]["quant_method"] = "gptq";
  EXPECT_FALSE(ModelConfig::FromJson(j).ok());
}

}  // namespace
}  // namespace dsv3
