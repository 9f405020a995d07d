// Router semantics on hand-built scores where the right answer is known.
#include <gtest/gtest.h>

#include <cmath>

#include "common/model/router.h"

namespace dsv3 {
namespace {

ModelConfig SmallMoe() {
  ModelConfig c;
  c.n_routed_experts = 8;
  c.num_experts_per_tok = 2;
  c.n_group = 4;
  c.topk_group = 2;
  c.routed_scaling_factor = 2.0;
  return c;
}

float Logit(float p) { return std::log(p / (1 - p)); }

TEST(Router, BiasSelectsButUnbiasedScoresWeigh) {
  ModelConfig c = SmallMoe();
  c.topk_group = 4;  // no group limit effect
  std::vector<float> logits = {Logit(.9f), Logit(.8f), Logit(.1f), Logit(.1f), Logit(.1f), Logit(.1f), Logit(.1f), Logit(.1f)};
  std::vector<float> bias(8, 0.0f);
  bias[5] = 1.0f;  // expert 5 selected despite its low score
  RoutingResult r;
  RouteTokens(c, logits.data(), bias.data(), 1, &r);
  EXPECT_EQ(r.experts[0], 5);
  EXPECT_EQ(r.experts[1], 0);
  // weights: unbiased sigmoid scores .1 and .9, normalized, times 2.
  EXPECT_NEAR(r.weights[0], 0.1 / 1.0 * 2, 1e-6);
  EXPECT_NEAR(r.weights[1], 0.9 / 1.0 * 2, 1e-6);
}

TEST(Router, GroupScoreIsSumOfTopTwo) {
  ModelConfig c = SmallMoe();
  c.topk_group = 1;
  // group 0: {.9, .05} (max .9, sum .95); group 1: {.5, .5} (max .5, sum 1.0).
  std::vector<float> logits = {Logit(.9f), Logit(.05f), Logit(.5f), Logit(.5f), Logit(.01f), Logit(.01f), Logit(.01f), Logit(.01f)};
  std::vector<float> bias(8, 0.0f);
  RoutingResult r;
  RouteTokens(c, logits.data(), bias.data(), 1, &r);
  EXPECT_EQ(std::min(r.experts[0], r.experts[1]), 2);
  EXPECT_EQ(std::max(r.experts[0], r.experts[1]), 3);
  // group_limited_greedy (max) picks group 0 instead.
  c.topk_method = TopkMethod::kGroupLimitedGreedy;
  RouteTokens(c, logits.data(), nullptr, 1, &r);
  EXPECT_EQ(r.experts[0], 0);
  EXPECT_EQ(r.experts[1], 1);
}

TEST(Router, SoftmaxScoringWithoutNormalization) {
  ModelConfig c = SmallMoe();
  c.model_type = "deepseek_v2";
  c.scoring_func = ScoringFunc::kSoftmax;
  c.topk_method = TopkMethod::kGreedy;
  c.norm_topk_prob = false;
  c.routed_scaling_factor = 1.0;
  std::vector<float> logits(8, 0.0f);
  logits[3] = 1.0f;
  RoutingResult r;
  RouteTokens(c, logits.data(), nullptr, 1, &r);
  EXPECT_EQ(r.experts[0], 3);
  const double z = 7 + std::exp(1.0);
  EXPECT_NEAR(r.weights[0], std::exp(1.0) / z, 1e-6);
  EXPECT_NEAR(r.weights[1], 1.0 / z, 1e-6);
}

}  // namespace
}  // namespace dsv3
