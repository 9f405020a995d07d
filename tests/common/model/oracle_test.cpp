// The definition of "the model math is right": the single-process engine reproduces the
// official DeepSeek-V3 reference (float32) on the fixtures in ../shared/oracle, within
// the tolerances of the fixtures' README.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>

#include "oracle_fixture.h"

namespace dsv3::testing {
namespace {

constexpr double kLogitTol = 1e-3;
constexpr double kLogprobTol = 1e-3;
constexpr double kRoutingWeightTol = 1e-5;
constexpr double kHiddenRelTol = 1e-4;

class OracleTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    dir_ = OracleDir(GetParam());
    if (dir_.empty()) {
      GTEST_SKIP() << "oracle fixture " << GetParam() << " not found under " << SharedDir()
                   << "/oracle (set DSV3_SHARED_DIR): skipping the reference-numerics test";
    }
    m_ = LoadOracle(dir_);
    ASSERT_NE(m_, nullptr);
  }
  std::string dir_;
  std::unique_ptr<OracleModel> m_;
};

// Checks one greedy step against the golden record; returns max |dlogprob| over top-10.
double CheckStep(const float* logits, int64_t V, const nlohmann::json& step, const std::string& what) {
  const auto lp = LogSoftmax(logits, V);
  double worst = 0;
  const auto& ids = step["top10_ids"];
  const auto& glp = step["top10_logprobs"];
  for (size_t i = 0; i < ids.size(); ++i) {
    worst = std::max(worst, std::fabs(lp[ids[i].get<int64_t>()] - glp[i].get<double>()));
  }
  EXPECT_LE(worst, kLogprobTol) << what;
  EXPECT_EQ(Argmax(logits, V), step["token"].get<int64_t>()) << what;
  return worst;
}

TEST_P(OracleTest, DerivedConstantsMatchReference) {
  const auto& d = m_->golden["derived"];
  const ModelConfig& cfg = m_->ckpt->config();
  EXPECT_NEAR(cfg.SoftmaxScale(), d["softmax_scale"].get<double>(), 1e-9);
  auto inv = cfg.RopeInvFreq();
  ASSERT_EQ(inv.size(), d["rope_inv_freq"].size());
  for (size_t i = 0; i < inv.size(); ++i) {
    const double g = d["rope_inv_freq"][i].get<double>();
    EXPECT_NEAR(inv[i], g, std::fabs(g) * 2e-7) << "inv_freq[" << i << "]";
  }
}

TEST_P(OracleTest, PromptsPrefillLogitsAndGreedyContinuations) {
  const int64_t V = m_->ckpt->config().vocab_size;
  for (const auto& p : m_->golden["prompts"]) {
    const std::string name = p["name"];
    std::vector<int64_t> toks = p["tokens"].get<std::vector<int64_t>>();
    auto kv = m_->model->NewCache();
    std::vector<float> logits;
    ASSERT_TRUE(m_->model->Forward({{kv.get(), toks.data(), static_cast<int64_t>(toks.size()), 0}}, &logits).ok());
    auto gold = ReadF32(dir_ + "/" + p["last_logits"]["file"].get<std::string>());
    ASSERT_EQ(static_cast<int64_t>(gold.size()), V) << name;
    double max_dlogit = 0;
    for (int64_t i = 0; i < V; ++i) max_dlogit = std::max(max_dlogit, static_cast<double>(std::fabs(logits[i] - gold[i])));
    EXPECT_LE(max_dlogit, kLogitTol) << name << " prefill logits";

    const auto& steps = p["greedy"]["steps"];
    double max_dlp = 0;
    int same = 0;
    int64_t pos = static_cast<int64_t>(toks.size());
    for (size_t s = 0; s < steps.size(); ++s) {
      max_dlp = std::max(max_dlp, CheckStep(logits.data(), V, steps[s], name + " step " + std::to_string(s)));
      const int64_t tok = Argmax(logits.data(), V);
      same += tok == steps[s]["token"].get<int64_t>();
      if (s + 1 == steps.size()) break;
      ASSERT_TRUE(m_->model->Forward({{kv.get(), &tok, 1, pos}}, &logits).ok());
      ++pos;
    }
    EXPECT_EQ(same, static_cast<int>(steps.size())) << name;
    std::printf("[oracle] %s %-6s prompt %3zu: prefill max|dlogit| %.2e, greedy %d/%zu identical, max|dlogprob| %.2e\n",
                GetParam(), name.c_str(), toks.size(), max_dlogit, same, steps.size(), max_dlp);
  }
}

TEST_P(OracleTest, HiddenStatesLen5) {
  const auto& hs = m_->golden["hidden_states"];
  const int64_t H = m_->ckpt->config().hidden_size;
  std::vector<int64_t> toks;
  for (const auto& p : m_->golden["prompts"]) {
    if (p["name"] == hs["prompt"]) toks = p["tokens"].get<std::vector<int64_t>>();
  }
  ASSERT_FALSE(toks.empty());
  auto gold = ReadF32(dir_ + "/" + hs["file"].get<std::string>());
  const int64_t T = static_cast<int64_t>(toks.size());
  const int64_t stages = m_->ckpt->config().num_hidden_layers + 2;
  ASSERT_EQ(static_cast<int64_t>(gold.size()), stages * T * H);
  std::vector<std::vector<float>> got(stages);
  ForwardObserver obs;
  obs.on_hidden = [&](int64_t stage, const float* x, int64_t rows) { got[stage].assign(x, x + rows * H); };
  auto kv = m_->model->NewCache();
  std::vector<float> logits;
  ASSERT_TRUE(m_->model->Forward({{kv.get(), toks.data(), T, 0}}, &logits, false, &obs).ok());
  double worst = 0;
  for (int64_t s = 0; s < stages; ++s) {
    ASSERT_EQ(static_cast<int64_t>(got[s].size()), T * H) << "stage " << s;
    for (int64_t t = 0; t < T; ++t) {
      const float* g = gold.data() + (s * T + t) * H;
      double rms = 0;
      for (int64_t i = 0; i < H; ++i) rms += static_cast<double>(g[i]) * g[i];
      rms = std::sqrt(rms / H);
      for (int64_t i = 0; i < H; ++i) {
        const double rel = std::fabs(got[s][t * H + i] - g[i]) / rms;
        worst = std::max(worst, rel);
        EXPECT_LE(rel, kHiddenRelTol) << "stage " << s << " pos " << t << " dim " << i;
      }
    }
  }
  std::printf("[oracle] %s hidden states len5: max |diff|/rms %.2e\n", GetParam(), worst);
}

TEST_P(OracleTest, RoutingLen17) {
  const auto& rl = m_->golden["routing_len17"];
  std::vector<int64_t> toks;
  for (const auto& p : m_->golden["prompts"]) {
    if (p["name"] == "len17") toks = p["tokens"].get<std::vector<int64_t>>();
  }
  ASSERT_EQ(toks.size(), 17u);
  std::map<int64_t, RoutingResult> got;
  ForwardObserver obs;
  obs.on_routing = [&](int64_t layer, const RoutingResult& r) { got[layer] = r; };
  auto kv = m_->model->NewCache();
  std::vector<float> logits;
  ASSERT_TRUE(m_->model->Forward({{kv.get(), toks.data(), 17, 0}}, &logits, false, &obs).ok());
  double worst = 0;
  int decisions = 0;
  for (auto it = rl["layers"].begin(); it != rl["layers"].end(); ++it) {
    const int64_t layer = std::stoll(it.key());
    ASSERT_TRUE(got.count(layer)) << "no routing observed for layer " << layer;
    const RoutingResult& r = got[layer];
    const auto& ex = (*it)["experts"];
    const auto& wt = (*it)["weights"];
    for (size_t t = 0; t < ex.size(); ++t) {
      std::map<int64_t, double> gold;
      for (size_t k = 0; k < ex[t].size(); ++k) gold[ex[t][k].get<int64_t>()] = wt[t][k].get<double>();
      std::map<int64_t, double> mine;
      for (int64_t k = 0; k < r.k; ++k) mine[r.experts[t * r.k + k]] = r.weights[t * r.k + k];
      std::set<int64_t> gs, ms;
      for (auto& [e, w] : gold) gs.insert(e);
      for (auto& [e, w] : mine) ms.insert(e);
      EXPECT_EQ(gs, ms) << "layer " << layer << " token " << t;
      for (auto& [e, w] : gold) {
        if (mine.count(e)) {
          worst = std::max(worst, std::fabs(mine[e] - w));
          EXPECT_NEAR(mine[e], w, kRoutingWeightTol) << "layer " << layer << " token " << t << " expert " << e;
        }
      }
      ++decisions;
    }
  }
  std::printf("[oracle] %s routing len17: %d token decisions, max |dweight| %.2e\n", GetParam(), decisions, worst);
}

// The reference's ragged batch: one forward over positions [0, min_len) of every row,
// then one position per forward, rows fed their own prompt until it ends (teacher forcing).
TEST_P(OracleTest, RaggedBatchMatchesReference) {
  const auto& seqs = m_->golden["batch"]["sequences"];
  const int64_t V = m_->ckpt->config().vocab_size;
  const size_t n = seqs.size();
  std::vector<std::vector<int64_t>> toks(n);
  std::vector<std::unique_ptr<SequenceKvCache>> kv(n);
  std::vector<std::vector<int64_t>> generated(n);
  size_t min_len = SIZE_MAX;
  for (size_t i = 0; i < n; ++i) {
    toks[i] = seqs[i]["tokens"].get<std::vector<int64_t>>();
    kv[i] = m_->model->NewCache();
    min_len = std::min(min_len, toks[i].size());
  }
  int64_t cur = static_cast<int64_t>(min_len);
  std::vector<float> logits;
  // First forward: [0, min_len) for all rows.
  std::vector<SequenceInput> in;
  for (size_t i = 0; i < n; ++i) in.push_back({kv[i].get(), toks[i].data(), cur, 0});
  double worst = 0;
  for (int iter = 0; iter < 1000; ++iter) {
    ASSERT_TRUE(m_->model->Forward(in, &logits).ok());
    // Map inputs back to sequences (all unfinished sequences take part in each forward).
    std::vector<SequenceInput> next;
    std::vector<size_t> active;
    for (size_t i = 0, j = 0; i < n; ++i) {
      if (generated[i].size() >= seqs[i]["greedy"]["steps"].size()) continue;
      const float* lg = logits.data() + j * V;
      ++j;
      int64_t feed;
      if (cur < static_cast<int64_t>(toks[i].size())) {
        feed = toks[i][cur];  // still inside its prompt
      } else {
        const auto& step = seqs[i]["greedy"]["steps"][generated[i].size()];
        EXPECT_EQ(step["pos"].get<int64_t>(), cur);
        worst = std::max(worst, CheckStep(lg, V, step, "batch row " + std::to_string(i)));
        feed = Argmax(lg, V);
        generated[i].push_back(feed);
        if (generated[i].size() >= seqs[i]["greedy"]["steps"].size()) continue;
      }
      if (static_cast<int64_t>(toks[i].size()) <= cur) toks[i].resize(cur + 1);
      toks[i][cur] = feed;
      active.push_back(i);
    }
    if (active.empty()) break;
    for (size_t i : active) next.push_back({kv[i].get(), toks[i].data() + cur, 1, cur});
    in = std::move(next);
    ++cur;
  }
  for (size_t i = 0; i < n; ++i) {
    EXPECT_EQ(generated[i], seqs[i]["greedy"]["tokens"].get<std::vector<int64_t>>()) << "batch row " << i;
  }
  std::printf("[oracle] %s ragged batch of %zu: greedy identical, max|dlogprob| %.2e\n", GetParam(), n, worst);
}

// Every ISA the CPU has gives the reference's greedy tokens.
TEST_P(OracleTest, EveryIsaReproducesGreedyTokens) {
  const auto best = kernels::DetectCpuIsa();
  for (auto isa : {kernels::CpuIsa::kScalar, kernels::CpuIsa::kAvx2, kernels::CpuIsa::kAvx512}) {
    if (static_cast<int>(isa) > static_cast<int>(best)) {
      std::printf("[oracle] ISA %s not supported by this CPU: not checked\n", kernels::CpuIsaName(isa));
      continue;
    }
    auto m = LoadOracle(dir_, isa, 2);
    ASSERT_NE(m, nullptr);
    const int64_t V = m->ckpt->config().vocab_size;
    for (const auto& p : m->golden["prompts"]) {
      if (p["name"] != "len17" && p["name"] != "chat") continue;
      std::vector<int64_t> toks = p["tokens"].get<std::vector<int64_t>>();
      auto kv = m->model->NewCache();
      std::vector<float> logits;
      ASSERT_TRUE(m->model->Forward({{kv.get(), toks.data(), static_cast<int64_t>(toks.size()), 0}}, &logits).ok());
      int64_t pos = static_cast<int64_t>(toks.size());
      for (const auto& step : p["greedy"]["steps"]) {
        CheckStep(logits.data(), V, step, std::string(kernels::CpuIsaName(isa)) + " " + p["name"].get<std::string>());
        const int64_t tok = Argmax(logits.data(), V);
        ASSERT_TRUE(m->model->Forward({{kv.get(), &tok, 1, pos++}}, &logits).ok());
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, OracleTest, ::testing::Values("tiny-bf16", "tiny-fp8"),
                         [](const auto& info) { return std::string(info.param) == "tiny-bf16" ? "bf16" : "fp8"; });

}  // namespace
}  // namespace dsv3::testing
