// A process maps only the tensors it serves: an expert-worker selection maps its slice of
// routed experts and none of the attention weights.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/model/model_weights.h"
#include "tools/mkmodel/random_checkpoint.h"

namespace dsv3 {
namespace {

// Removes a test's scratch directory however the test ends.
struct Cleanup {
  std::string dir;
  ~Cleanup() { std::filesystem::remove_all(dir); }
};

std::string MakeModel(const std::string& name) {
  auto cfg = PresetConfig("tiny", false);
  EXPECT_TRUE(cfg.ok());
  nlohmann::json j = cfg->ToJson();
  // Tensors of several pages each, so page-granular mapping can be checked per tensor.
  for (const char* kv : {"vocab_size=4096", "hidden_size=256", "moe_intermediate_size=64", "intermediate_size=256"}) {
    EXPECT_TRUE(ApplyConfigOverride(&j, kv).ok()) << kv;
  }
  const std::string dir = ::testing::TempDir() + "/dsv3_wsel_" + name + "_" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  auto r = WriteRandomCheckpoint(dir, j, 5, 3);
  EXPECT_TRUE(r.ok()) << r.status();
  return dir;
}

TEST(WeightSelection, ExpertSliceMapsOnlyItsExperts) {
  const std::string dir = MakeModel("slice");
  Cleanup cleanup{dir};
  auto ck = Checkpoint::Open(dir);
  ASSERT_TRUE(ck.ok()) << ck.status();
  const ModelConfig& cfg = (*ck)->config();
  WeightSelection sel;
  sel.attention_and_dense = false;
  sel.expert_mask.assign(cfg.n_routed_experts, false);
  for (int e = 0; e < 64; ++e) sel.expert_mask[e] = true;
  auto w = LoadModelWeights(**ck, sel);
  ASSERT_TRUE(w.ok()) << w.status();

  uint64_t slice_bytes = 0;
  const auto names = RequiredTensorNames(cfg, sel);
  for (const auto& n : names) {
    auto t = (*ck)->Get(n);
    ASSERT_TRUE(t.ok()) << n;
    slice_bytes += t->info->end - t->info->begin;
  }
  // Page rounding at most adds a page on each side of each tensor.
  EXPECT_LE((*ck)->bytes_mapped(), slice_bytes + names.size() * 2 * 4096);
  EXPECT_GE((*ck)->bytes_mapped(), slice_bytes);
  // Attention, dense, gate and unselected experts were not mapped.
  for (const std::string n : {"model.layers.0.self_attn.q_a_proj.weight", "model.layers.1.self_attn.kv_b_proj.weight",
                              "model.layers.0.mlp.gate_proj.weight", "model.embed_tokens.weight",
                              "model.layers.1.mlp.experts.200.up_proj.weight"}) {
    auto t = (*ck)->Get(n);
    EXPECT_FALSE(t.ok()) << n << " is mapped but was not asked for";
  }
  const auto& moe = *w->layers[1].moe;
  EXPECT_TRUE(moe.hosted[0]);
  EXPECT_TRUE(moe.hosted[63]);
  EXPECT_FALSE(moe.hosted[64]);
  EXPECT_EQ(moe.experts[5].gate.rows, cfg.moe_intermediate_size);
}

TEST(WeightSelection, AttentionSideMapsNoRoutedExperts) {
  const std::string dir = MakeModel("attn");
  Cleanup cleanup{dir};
  auto ck = Checkpoint::Open(dir);
  ASSERT_TRUE(ck.ok());
  WeightSelection sel;
  sel.routed_experts = false;
  auto w = LoadModelWeights(**ck, sel);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_FALSE((*ck)->Get("model.layers.1.mlp.experts.0.gate_proj.weight").ok());
  EXPECT_TRUE((*ck)->Get("model.layers.1.mlp.shared_experts.gate_proj.weight").ok());
}

// Weights read into anonymous (huge-page) memory are byte-identical to the mmap'ed ones.
TEST(WeightSelection, CopyToAnonymousMemoryMatchesMmap) {
  const std::string dir = MakeModel("copy");
  Cleanup cleanup{dir};
  auto a = Checkpoint::Open(dir), b = Checkpoint::Open(dir);
  ASSERT_TRUE(a.ok() && b.ok());
  WeightSelection sel;
  auto wa = LoadModelWeights(**a, sel);
  sel.copy_to_anonymous = true;
  auto wb = LoadModelWeights(**b, sel);
  ASSERT_TRUE(wa.ok() && wb.ok()) << wb.status();
  for (const auto& n : (*a)->TensorNames()) {
    auto ta = (*a)->Get(n), tb = (*b)->Get(n);
    ASSERT_TRUE(ta.ok() && tb.ok()) << n;
    ASSERT_NE(ta->data, tb->data);
    ASSERT_EQ(0, std::memcmp(ta->data, tb->data, ta->info->end - ta->info->begin)) << n;
  }
}

TEST(WeightSelection, MissingScaleOfFp8WeightIsNamed) {
  auto cfg = PresetConfig("tiny", true);
  ASSERT_TRUE(cfg.ok());
  const std::string dir = ::testing::TempDir() + "/dsv3_wsel_noscale_" + std::to_string(::getpid());
  Cleanup cleanup{dir};
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(WriteRandomCheckpoint(dir, cfg->ToJson(), 3, 2).ok());
  // Drop one scale from the index: the loader must name the weight and the missing scale.
  const std::string index_path = dir + "/model.safetensors.index.json";
  std::ifstream in(index_path);
  nlohmann::json index = nlohmann::json::parse(in);
  in.close();
  const std::string victim = "model.layers.1.mlp.experts.3.down_proj.weight";
  ASSERT_TRUE(index["weight_map"].contains(victim + "_scale_inv"));
  index["weight_map"].erase(victim + "_scale_inv");
  std::ofstream(index_path) << index.dump();
  auto ck = Checkpoint::Open(dir);
  ASSERT_TRUE(ck.ok()) << ck.status();
  auto w = LoadModelWeights(**ck, WeightSelection{});
  ASSERT_FALSE(w.ok());
  const std::string msg(w.status().message());
  EXPECT_NE(msg.find(victim), std::string::npos) << msg;
  EXPECT_NE(msg.find("scale"), std::string::npos) << msg;
}

}  // namespace
}  // namespace dsv3
