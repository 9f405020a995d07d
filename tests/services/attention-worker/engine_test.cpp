// The serving engine against itself and the reference: continuous batching, chunked
// prefill, prefix caching, n > 1, seeded sampling, preemption, abort, prefill/decode KV
// hand-off and the oracle fixtures, all through Engine (no gRPC here).
//
// Batch invariance: the kernels reduce each row in the same order whatever the batch,
// except that the decode GEMV path (<= 16 rows) and the GEMM paths differ, so a request's
// logits in a batch match its logits alone to ~1e-6, not bit for bit. The comparisons
// therefore require equal tokens wherever the reference's top-2 margin exceeds 1e-3 and
// log-probabilities within 1e-4 (the rule).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/engine/model_instance.h"
#include "common/sampling/json_automaton.h"
#include "common/tokenizer/bpe_tokenizer.h"
#include "services/attention-worker/engine/engine.h"
#include "test_models.h"

namespace dsv3 {
namespace {

using testing::SharedOracle;
using testing::ScratchDir;

constexpr double kMarginTol = 1e-3;
constexpr double kLogprobTol = 1e-4;


const std::string& MkModel() {
  static const std::string dir = testing::RandomTinyModel("engine_mkmodel", 23, false);
  return dir;
}


std::unique_ptr<ModelInstance> Load(const std::string& dir) {
  ModelInstanceOptions o;
  o.model_dir = dir;
  o.backend = {kernels::CpuIsa::kAuto, 2};
  auto m = LoadModelInstance(o);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? std::move(*m) : nullptr;
}

struct Result {
  std::vector<std::vector<int64_t>> tokens;       // per choice
  std::vector<std::vector<SampledToken>> lps;     // per choice
  std::vector<FinishReason> finish;
  RequestOutput last;
  Status error;
  int64_t outputs = 0;
  std::vector<SampledToken> prompt_lps;  // prompt positions prompt_lp_start.. in order
  int64_t prompt_lp_start = 0;
};

Result Collect(std::shared_ptr<OutputStream> s, int32_t n) {
  Result r;
  r.tokens.resize(static_cast<size_t>(n));
  r.lps.resize(static_cast<size_t>(n));
  r.finish.resize(static_cast<size_t>(n), FinishReason::kNone);
  for (int i = 0; i < 20000; ++i) {
    auto o = s->Pop(60000);
    if (!o) {
      r.error = absl::DeadlineExceededError("no output in 60 s");
      return r;
    }
    ++r.outputs;
    if (!o->prompt_logprobs.empty()) {
      if (r.prompt_lps.empty()) r.prompt_lp_start = o->prompt_logprobs_start;
      EXPECT_EQ(o->prompt_logprobs_start, r.prompt_lp_start + static_cast<int64_t>(r.prompt_lps.size()))
          << "prompt logprobs arrive in order, each once";
      r.prompt_lps.insert(r.prompt_lps.end(), o->prompt_logprobs.begin(), o->prompt_logprobs.end());
    }
    for (const auto& c : o->choices) {
      auto& t = r.tokens[static_cast<size_t>(c.index)];
      t.insert(t.end(), c.tokens.begin(), c.tokens.end());
      auto& l = r.lps[static_cast<size_t>(c.index)];
      l.insert(l.end(), c.logprobs.begin(), c.logprobs.end());
      if (c.finish != FinishReason::kNone) r.finish[static_cast<size_t>(c.index)] = c.finish;
    }
    if (o->final) {
      r.error = o->error;
      r.last = std::move(*o);
      return r;
    }
  }
  r.error = absl::InternalError("too many outputs");
  return r;
}

GenerateParams Greedy(const std::string& id, std::vector<int64_t> prompt, int32_t max_tokens) {
  GenerateParams p;
  p.request_id = id;
  p.prompt = std::move(prompt);
  p.sampling.temperature = 0;
  p.sampling.logprobs = 1;
  p.sampling.top_logprobs = 2;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  return p;
}

std::vector<int64_t> RandomPrompt(std::mt19937_64& rng, int64_t len, int64_t vocab) {
  std::uniform_int_distribution<int64_t> d(2, vocab - 1);
  std::vector<int64_t> p(static_cast<size_t>(len));
  for (auto& t : p) t = d(rng);
  return p;
}

// Tokens equal wherever the reference's top-2 margin exceeds kMarginTol; log-probs within
// kLogprobTol while the tokens agree. Returns the number of compared steps.
int64_t ExpectEquivalent(const std::vector<int64_t>& ref, const std::vector<SampledToken>& ref_lp,
                         const std::vector<int64_t>& got, const std::vector<SampledToken>& got_lp,
                         const std::string& what) {
  EXPECT_EQ(ref.size(), got.size()) << what;
  const size_t n = std::min(ref.size(), got.size());
  for (size_t i = 0; i < n; ++i) {
    if (i < ref_lp.size() && i < got_lp.size()) {
      EXPECT_NEAR(ref_lp[i].logprob, got_lp[i].logprob, kLogprobTol) << what << " step " << i;
    }
    if (ref[i] != got[i]) {
      const bool close = i < ref_lp.size() && ref_lp[i].top.size() >= 2 &&
                         ref_lp[i].top[0].logprob - ref_lp[i].top[1].logprob <= kMarginTol;
      EXPECT_TRUE(close) << what << ": token " << i << " differs (" << ref[i] << " vs " << got[i]
                         << ") with a clear margin";
      return static_cast<int64_t>(i);
    }
  }
  return static_cast<int64_t>(n);
}

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    m_ = Load(MkModel());
    ASSERT_NE(m_, nullptr);
    V_ = m_->config().vocab_size;
  }
  std::unique_ptr<Engine> MakeEngine(EngineConfig cfg = {}) {
    if (cfg.num_blocks == 0 && cfg.kv_cache_bytes == (256ll << 20)) cfg.num_blocks = 512;
    auto e = Engine::Create(*m_->model, cfg);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? std::move(*e) : nullptr;
  }
  Result RunAlone(Engine& e, const GenerateParams& p) {
    auto s = e.Submit(p);
    EXPECT_TRUE(s.ok()) << s.status();
    return Collect(*s, p.n);
  }
  std::unique_ptr<ModelInstance> m_;
  int64_t V_ = 0;
};

TEST_F(EngineTest, PagedEngineMatchesContiguousReference) {
  auto e = MakeEngine();
  std::mt19937_64 rng(1);
  auto prompt = RandomPrompt(rng, 37, V_);
  Result r = RunAlone(*e, Greedy("a", prompt, 12));
  ASSERT_TRUE(r.error.ok()) << r.error;
  // The offline path: contiguous cache, one sequence.
  auto kv = m_->model->NewCache();
  std::vector<float> logits;
  std::vector<int64_t> toks = prompt, ref;
  ASSERT_TRUE(m_->model->Forward({{kv.get(), toks.data(), static_cast<int64_t>(toks.size()), 0}}, &logits).ok());
  for (int i = 0; i < 12; ++i) {
    int64_t best = 0;
    for (int64_t v = 1; v < V_; ++v) best = logits[v] > logits[best] ? v : best;
    ref.push_back(best);
    ASSERT_TRUE(m_->model->Forward({{kv.get(), &best, 1, static_cast<int64_t>(prompt.size()) + i}}, &logits).ok());
  }
  EXPECT_EQ(r.tokens[0], ref);
  EXPECT_EQ(r.finish[0], FinishReason::kLength);
  EXPECT_EQ(r.last.prompt_tokens, 37);
  EXPECT_EQ(r.last.completion_tokens, 12);
}

TEST_F(EngineTest, ThirtyTwoConcurrentRequestsMatchEachAlone) {
  auto e = MakeEngine();
  std::mt19937_64 rng(2);
  std::vector<GenerateParams> reqs;
  for (int i = 0; i < 32; ++i) {
    const int64_t len = 1 + static_cast<int64_t>(rng() % 90);
    reqs.push_back(Greedy("r" + std::to_string(i), RandomPrompt(rng, len, V_), 4 + static_cast<int32_t>(rng() % 13)));
  }
  std::vector<Result> alone;
  for (const auto& p : reqs) alone.push_back(RunAlone(*e, p));
  std::vector<std::shared_ptr<OutputStream>> streams;
  for (const auto& p : reqs) {
    auto s = e->Submit(p);
    ASSERT_TRUE(s.ok());
    streams.push_back(*s);
  }
  int64_t compared = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    Result r = Collect(streams[i], 1);
    ASSERT_TRUE(r.error.ok()) << r.error;
    compared += ExpectEquivalent(alone[i].tokens[0], alone[i].lps[0], r.tokens[0], r.lps[0], reqs[i].request_id);
  }
  std::printf("[engine] 32 concurrent requests: %lld tokens compared with their solo runs\n",
              static_cast<long long>(compared));
  const EngineLoad l = e->load();
  EXPECT_EQ(l.kv_blocks_free, l.kv_blocks_total) << "finished requests keep no blocks referenced";
}

// Steps of at most 64 tokens take batch-invariant paths end to end (linears, MLA, experts,
// LM head): a request's log-probabilities are then bit-identical alone and in a batch.
TEST_F(EngineTest, SmallStepsAreBitExactAcrossBatchCompositions) {
  EngineConfig cfg;
  cfg.scheduler.max_batch_tokens = 64;
  auto e = MakeEngine(cfg);
  std::mt19937_64 rng(13);
  std::vector<GenerateParams> reqs;
  for (int i = 0; i < 6; ++i) reqs.push_back(Greedy("b" + std::to_string(i), RandomPrompt(rng, 2 + i, V_), 12));
  std::vector<Result> alone;
  for (const auto& p : reqs) alone.push_back(RunAlone(*e, p));
  std::vector<std::shared_ptr<OutputStream>> streams;
  for (const auto& p : reqs) streams.push_back(*e->Submit(p));
  for (size_t i = 0; i < reqs.size(); ++i) {
    Result r = Collect(streams[i], 1);
    ASSERT_TRUE(r.error.ok()) << r.error;
    EXPECT_EQ(r.tokens[0], alone[i].tokens[0]) << reqs[i].request_id;
    ASSERT_EQ(r.lps[0].size(), alone[i].lps[0].size());
    for (size_t t = 0; t < r.lps[0].size(); ++t) {
      EXPECT_EQ(r.lps[0][t].logprob, alone[i].lps[0][t].logprob) << reqs[i].request_id << " step " << t << " (bitwise)";
    }
  }
}

TEST_F(EngineTest, ChunkedPrefillMatchesWholePrefill) {
  std::mt19937_64 rng(3);
  auto p = Greedy("c", RandomPrompt(rng, 150, V_), 10);
  auto whole = MakeEngine();
  Result a = RunAlone(*whole, p);
  EngineConfig cfg;
  cfg.scheduler.max_batch_tokens = 7;  // 150 tokens in 22 chunks
  auto chunked = MakeEngine(cfg);
  Result b = RunAlone(*chunked, p);
  ASSERT_TRUE(a.error.ok() && b.error.ok());
  EXPECT_EQ(ExpectEquivalent(a.tokens[0], a.lps[0], b.tokens[0], b.lps[0], "chunked"), 10);
  EXPECT_GE(chunked->load().steps, 22u);
}

TEST_F(EngineTest, PrefixCacheHitMatchesMiss) {
  auto e = MakeEngine();
  std::mt19937_64 rng(4);
  auto shared = RandomPrompt(rng, 64, V_);
  auto p1 = shared, p2 = shared;
  auto t1 = RandomPrompt(rng, 5, V_), t2 = RandomPrompt(rng, 9, V_);
  p1.insert(p1.end(), t1.begin(), t1.end());
  p2.insert(p2.end(), t2.begin(), t2.end());
  // Miss: a fresh engine. Hit: the same engine after p1 published the shared blocks.
  auto cold = MakeEngine();
  Result miss = RunAlone(*cold, Greedy("m", p2, 8));
  EXPECT_EQ(miss.last.cached_prompt_tokens, 0);
  ASSERT_TRUE(RunAlone(*e, Greedy("p1", p1, 3)).error.ok());
  Result hit = RunAlone(*e, Greedy("h", p2, 8));
  EXPECT_EQ(hit.last.cached_prompt_tokens, 64) << "four 16-token blocks shared";
  EXPECT_EQ(ExpectEquivalent(miss.tokens[0], miss.lps[0], hit.tokens[0], hit.lps[0], "prefix hit"), 8);
  EXPECT_GE(e->load().prefix_hit_tokens, 64u);
}

// Prompt logprobs (echo with logprobs): teacher-forcing a greedy continuation gives back
// the logprobs the generation reported, whether the prompt was partly cached (the hit is
// skipped: every token needs its row), computed in 7-token chunks, or preempted later.
TEST_F(EngineTest, PromptLogprobsEqualTheGeneratedOnesUnderTeacherForcing) {
  auto e = MakeEngine();
  std::mt19937_64 rng(14);
  const auto prompt = RandomPrompt(rng, 40, V_);
  auto gen = Greedy("gen", prompt, 12);
  gen.sampling.top_logprobs = 5;
  Result g = RunAlone(*e, gen);
  ASSERT_TRUE(g.error.ok()) << g.error;
  ASSERT_EQ(g.tokens[0].size(), 12u);
  EXPECT_TRUE(g.prompt_lps.empty()) << "only asked-for prompt logprobs are computed";
  auto forced = prompt;
  forced.insert(forced.end(), g.tokens[0].begin(), g.tokens[0].end());
  auto score = Greedy("score", forced, 1);
  score.prompt_logprobs = 5;
  auto check = [&](const Result& s, const std::string& what) {
    SCOPED_TRACE(what);
    ASSERT_TRUE(s.error.ok()) << s.error;
    EXPECT_EQ(s.last.cached_prompt_tokens, 0);
    EXPECT_EQ(s.prompt_lp_start, 1);
    ASSERT_EQ(s.prompt_lps.size(), forced.size() - 1);
    for (size_t i = 0; i < s.prompt_lps.size(); ++i) {
      EXPECT_EQ(s.prompt_lps[i].id, forced[i + 1]);
      EXPECT_LE(s.prompt_lps[i].logprob, 0.0);
      ASSERT_EQ(s.prompt_lps[i].top.size(), 5u);
    }
    for (size_t j = 0; j < 12; ++j) {
      const SampledToken& want = g.lps[0][j];
      const SampledToken& got = s.prompt_lps[prompt.size() - 1 + j];
      EXPECT_NEAR(got.logprob, want.logprob, kLogprobTol) << "token " << j;
      for (size_t k = 0; k < 5; ++k) {
        EXPECT_NEAR(got.top[k].logprob, want.top[k].logprob, kLogprobTol) << "token " << j << " top " << k;
        // The id at rank k is only defined when its neighbours are clearly apart.
        const bool tie = (k + 1 < 5 && want.top[k].logprob - want.top[k + 1].logprob <= kMarginTol) ||
                         (k > 0 && want.top[k - 1].logprob - want.top[k].logprob <= kMarginTol);
        if (!tie) {
          EXPECT_EQ(got.top[k].id, want.top[k].id) << "token " << j << " top " << k;
        }
      }
    }
  };
  check(RunAlone(*e, score), "after a run that cached the first 32 prompt tokens");
  // max_tokens 0: the prompt is scored and nothing is generated.
  auto only = score;
  only.max_tokens = 0;
  only.n = 2;
  Result o = RunAlone(*e, only);
  check(o, "max_tokens 0");
  EXPECT_TRUE(o.tokens[0].empty() && o.tokens[1].empty());
  EXPECT_EQ(o.finish[0], FinishReason::kLength);
  EXPECT_EQ(o.finish[1], FinishReason::kLength);
  EXPECT_EQ(o.last.completion_tokens, 0);
  EngineConfig chunked;
  chunked.scheduler.max_prompt_logit_rows = 7;
  auto c = MakeEngine(chunked);
  Result cs = RunAlone(*c, score);
  check(cs, "7-token chunks");
  EXPECT_GE(c->load().steps, 8u) << "52 prompt tokens in chunks of 7";
  // Preemption after the prompt logprobs were sent recomputes without repeating them
  // (Collect checks order and uniqueness): 6 such requests growing in a 12-block cache.
  EngineConfig tight;
  tight.num_blocks = 12;
  auto t = MakeEngine(tight);
  std::vector<std::shared_ptr<OutputStream>> streams;
  for (int i = 0; i < 6; ++i) {
    auto p = score;
    p.request_id = "tight" + std::to_string(i);
    p.max_tokens = 20;
    streams.push_back(*t->Submit(p));
  }
  for (auto& st : streams) check(Collect(st, 1), "under preemption");
  EXPECT_GT(t->load().preemptions, 0u);
  EXPECT_EQ(t->load().kv_blocks_free, t->load().kv_blocks_total);
}

// response_format json_object: every choice is one JSON object (nlohmann parses it) when it
// stops, a valid prefix when cut by max_tokens, EOS only after the closing brace; the same
// seeded choices through a prefill engine and a decode engine; refused without a tokenizer.
TEST_F(EngineTest, JsonObjectModeConstrainsEveryChoice) {
  auto plain = MakeEngine();
  auto json_req = Greedy("json", {0, 100, 200, 300}, 60);
  json_req.sampling.json_object = true;
  auto refused = plain->Submit(json_req);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("tokenizer.json"), std::string::npos) << refused.status();
  const std::string tdir = testing::SharedTokenizer();
  if (tdir.empty()) GTEST_SKIP() << "../shared/tokenizer not found (set DSV3_SHARED_DIR): json_object run skipped";
  auto tok = BpeTokenizer::FromDirectory(tdir);
  ASSERT_TRUE(tok.ok()) << tok.status();
  const int64_t close = *(*tok)->TokenToId("}");
  const int64_t eos = m_->config().eos_token_id;
  EngineConfig cfg;
  cfg.tokenizer_dir = tdir;
  auto e = MakeEngine(cfg);
  json_req.n = 6;
  json_req.sampling.temperature = 1.0f;
  json_req.sampling.seed = 11;
  json_req.sampling.logit_bias = {{close, 8.0f}};  // most choices close at once, some write on
  json_req.ignore_eos = false;
  Result r = RunAlone(*e, json_req);
  ASSERT_TRUE(r.error.ok()) << r.error;
  int stopped = 0;
  for (int c = 0; c < 6; ++c) {
    std::string text;
    JsonAutomaton prefix;
    for (int64_t id : r.tokens[c]) {
      if (id == eos) break;
      auto piece = (*tok)->GetPiece(static_cast<int32_t>(id));
      ASSERT_TRUE(piece.ok());
      text += std::string(piece->bytes);
    }
    ASSERT_TRUE(prefix.Feed(text)) << "choice " << c << ": " << text;
    std::printf("[engine] json_object choice %d: %s, %zu tokens, %zu bytes\n", c, FinishReasonName(r.finish[c]),
                r.tokens[c].size(), text.size());
    if (r.finish[c] == FinishReason::kStop) {
      ++stopped;
      EXPECT_EQ(r.tokens[c].back(), eos);
      EXPECT_TRUE(nlohmann::json::accept(text) && text.find('{') != std::string::npos) << text;
    }
  }
  EXPECT_GE(stopped, 1) << "with '}' favoured some choice closes its object";
  // Unbiased, the random model writes on until max_tokens: nlohmann must find each text a
  // valid prefix (its only complaint the end of the input).
  auto free_req = json_req;
  free_req.request_id = "json-free";
  free_req.n = 3;
  free_req.sampling.logit_bias.clear();
  Result fr = RunAlone(*e, free_req);
  ASSERT_TRUE(fr.error.ok()) << fr.error;
  for (int c = 0; c < 3; ++c) {
    std::string text;
    for (int64_t id : fr.tokens[c]) {
      if (id != eos) text += std::string((*tok)->GetPiece(static_cast<int32_t>(id))->bytes);
    }
    bool prefix = false;
    try {
      [[maybe_unused]] const auto parsed = nlohmann::json::parse(text);
      prefix = true;
    } catch (const nlohmann::json::parse_error& err) {
      prefix = err.byte > text.size();  // nlohmann's position is 1-based; past the end = end of input
    }
    EXPECT_TRUE(prefix) << "choice " << c << ": " << text;
    EXPECT_GT(text.size(), 20u) << "choice " << c << " wrote something";
  }
  // Prefill here, decode there: the constraint's state is rebuilt from the first token.
  auto m2 = Load(MkModel());
  EngineConfig dcfg = cfg;
  dcfg.num_blocks = 512;
  auto decode = *Engine::Create(*m2->model, dcfg);
  auto colo = MakeEngine(cfg);
  Result colocated = RunAlone(*colo, json_req);
  auto pre = json_req;
  pre.prefill_only = true;
  Result first = RunAlone(*e, pre);
  ASSERT_TRUE(first.error.ok()) << first.error;
  ASSERT_NE(first.last.kv_export, nullptr) << "some choice goes on after its first token";
  {
    auto h = decode->ImportKv(first.last.kv_export);
    ASSERT_TRUE(h.ok()) << h.status();
    Result tail = Collect(*decode->Resume(*h, "json-pd"), json_req.n);
    ASSERT_TRUE(tail.error.ok()) << tail.error;
    for (int c = 0; c < json_req.n; ++c) {
      std::vector<int64_t> joined = first.tokens[c];
      joined.insert(joined.end(), tail.tokens[c].begin(), tail.tokens[c].end());
      EXPECT_EQ(joined, colocated.tokens[c]) << "choice " << c;
    }
  }
}

TEST_F(EngineTest, NChoicesShareThePromptAndGreedyChoicesAgree) {
  auto e = MakeEngine();
  std::mt19937_64 rng(5);
  auto prompt = RandomPrompt(rng, 21, V_);  // one full block + a partial one (copied per choice)
  Result one = RunAlone(*e, Greedy("n1", prompt, 6));
  auto p = Greedy("n4", prompt, 6);
  p.n = 4;
  Result four = RunAlone(*e, p);
  ASSERT_TRUE(four.error.ok()) << four.error;
  for (int c = 0; c < 4; ++c) {
    EXPECT_EQ(ExpectEquivalent(one.tokens[0], one.lps[0], four.tokens[c], four.lps[c], "choice " + std::to_string(c)), 6);
  }
  EXPECT_EQ(four.last.completion_tokens, 24);
  // Sampled choices of one seed differ from each other but repeat exactly.
  auto s = Greedy("s", prompt, 12);
  s.n = 3;
  s.sampling.temperature = 1.0f;
  s.sampling.seed = 7;
  Result x = RunAlone(*e, s), y = RunAlone(*e, s);
  EXPECT_EQ(x.tokens, y.tokens);
  EXPECT_NE(x.tokens[0], x.tokens[1]);
  const EngineLoad l = e->load();
  EXPECT_EQ(l.kv_blocks_free, l.kv_blocks_total);
}

TEST_F(EngineTest, SeededSamplingIsIndependentOfBatchComposition) {
  std::mt19937_64 rng(6);
  auto p = Greedy("seeded", RandomPrompt(rng, 30, V_), 20);
  p.sampling.temperature = 0.9f;
  p.sampling.top_p = 0.95f;
  p.sampling.top_k = 50;
  p.sampling.seed = 1234;
  auto e = MakeEngine();
  Result alone = RunAlone(*e, p);
  // The same request among 12 others (different lengths, sampled and greedy).
  std::vector<std::shared_ptr<OutputStream>> others;
  for (int i = 0; i < 12; ++i) {
    auto q = Greedy("o" + std::to_string(i), RandomPrompt(rng, 5 + i * 7, V_), 25);
    q.sampling.temperature = i % 2 ? 1.0f : 0.0f;
    others.push_back(*e->Submit(q));
  }
  auto mine = e->Submit(p);
  ASSERT_TRUE(mine.ok());
  Result batched = Collect(*mine, 1);
  for (auto& o : others) ASSERT_TRUE(Collect(o, 1).error.ok());
  EXPECT_EQ(alone.tokens[0], batched.tokens[0]);
}

TEST_F(EngineTest, KvExhaustionPreemptsAndRecovers) {
  // 14 blocks of 16 positions = 224 positions; 8 requests that each grow to 70 positions.
  EngineConfig cfg;
  cfg.num_blocks = 14;
  auto small = MakeEngine(cfg);
  auto big = MakeEngine();
  std::mt19937_64 rng(7);
  std::vector<GenerateParams> reqs;
  for (int i = 0; i < 8; ++i) reqs.push_back(Greedy("k" + std::to_string(i), RandomPrompt(rng, 30, V_), 40));
  std::vector<std::shared_ptr<OutputStream>> streams;
  for (const auto& p : reqs) streams.push_back(*small->Submit(p));
  std::vector<Result> got;
  for (size_t i = 0; i < reqs.size(); ++i) {
    got.push_back(Collect(streams[i], 1));
    ASSERT_TRUE(got.back().error.ok()) << got.back().error;
  }
  // References only after `small` is idle: engines sharing one model must not overlap.
  for (size_t i = 0; i < reqs.size(); ++i) {
    Result ref = RunAlone(*big, reqs[i]);
    ExpectEquivalent(ref.tokens[0], ref.lps[0], got[i].tokens[0], got[i].lps[0], "preempted " + reqs[i].request_id);
    EXPECT_EQ(got[i].tokens[0].size(), 40u);
  }
  const EngineLoad l = small->load();
  std::printf("[engine] KV exhaustion: %llu preemptions, all 8 requests completed\n",
              static_cast<unsigned long long>(l.preemptions));
  EXPECT_GT(l.preemptions, 0u);
  EXPECT_EQ(l.kv_blocks_free, l.kv_blocks_total);
}

TEST_F(EngineTest, SequenceLargerThanTheCacheEndsWithLength) {
  EngineConfig cfg;
  cfg.num_blocks = 3;  // 48 positions
  auto e = MakeEngine(cfg);
  std::mt19937_64 rng(8);
  Result r = RunAlone(*e, Greedy("big", RandomPrompt(rng, 20, V_), 100));
  ASSERT_TRUE(r.error.ok()) << r.error;
  EXPECT_EQ(r.finish[0], FinishReason::kLength);
  EXPECT_EQ(r.tokens[0].size(), 48u - 20u + 1u) << "48 positions computed, the last one sampled";
  EXPECT_EQ(e->load().kv_blocks_free, 3);
}

TEST_F(EngineTest, BadRequestsAreRejectedWithTheField) {
  EngineConfig cfg;
  cfg.max_model_len = 64;
  auto e = MakeEngine(cfg);
  std::mt19937_64 rng(9);
  auto too_long = e->Submit(Greedy("x", RandomPrompt(rng, 64, V_), 1));
  ASSERT_FALSE(too_long.ok());
  EXPECT_NE(too_long.status().message().find("the prompt has 64 tokens but the context is 64"), std::string::npos)
      << too_long.status();
  EXPECT_FALSE(e->Submit(Greedy("x", {}, 1)).ok());
  auto bad_id = e->Submit(Greedy("x", {1, V_ + 5}, 1));
  ASSERT_FALSE(bad_id.ok());
  EXPECT_NE(bad_id.status().message().find("outside the vocabulary"), std::string::npos);
  auto negative = Greedy("x", {1, 2}, -1);
  EXPECT_NE(e->Submit(negative).status().message().find("max_tokens"), std::string::npos);
  auto n = Greedy("x", {1, 2}, 1);
  n.n = 99;
  EXPECT_NE(e->Submit(n).status().message().find("n must be"), std::string::npos);
  auto t = Greedy("x", {1, 2}, 1);
  t.sampling.temperature = -1;
  EXPECT_NE(e->Submit(t).status().message().find("temperature"), std::string::npos);
  auto pl = Greedy("x", {1, 2}, 1);
  pl.prompt_logprobs = 21;
  EXPECT_NE(e->Submit(pl).status().message().find("prompt_logprobs must be in [0, 20]"), std::string::npos);
  // Generation stops at the context.
  Result r = RunAlone(*e, Greedy("ctx", RandomPrompt(rng, 60, V_), 50));
  EXPECT_EQ(r.tokens[0].size(), 4u);
  EXPECT_EQ(r.finish[0], FinishReason::kLength);
}

TEST_F(EngineTest, AbortFreesBlocksImmediately) {
  auto e = MakeEngine();
  std::mt19937_64 rng(10);
  auto s = e->Submit(Greedy("long", RandomPrompt(rng, 100, V_), 5000));
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE((*s)->Pop(30000).has_value());  // running
  EXPECT_LT(e->load().kv_blocks_free, e->load().kv_blocks_total);
  EXPECT_TRUE(e->Abort("long"));
  const EngineLoad l = e->load();
  EXPECT_EQ(l.kv_blocks_free, l.kv_blocks_total);
  EXPECT_EQ(l.running, 0);
  // The stream ends with an abort.
  Result r = Collect(*s, 1);
  EXPECT_EQ(r.finish[0], FinishReason::kAbort);
  EXPECT_FALSE(e->Abort("long"));
}

TEST_F(EngineTest, PrefillOnOneEngineAndDecodeOnAnotherMatchColocated) {
  auto m2 = Load(MkModel());  // the decode engine has its own model (own thread)
  ASSERT_NE(m2, nullptr);
  auto prefill = MakeEngine();
  EngineConfig dcfg;
  dcfg.num_blocks = 512;
  dcfg.worker_id = "decode";
  auto decode = *Engine::Create(*m2->model, dcfg);
  std::mt19937_64 rng(11);
  for (int n : {1, 3}) {
    auto p = Greedy("pd" + std::to_string(n), RandomPrompt(rng, 45, V_), 15);
    p.n = n;
    p.sampling.temperature = n == 1 ? 0.0f : 0.8f;
    p.sampling.seed = 99;
    p.sampling.presence_penalty = 0.5f;
    // The colocated reference runs where the prompt is not cached, like the prefill-only
    // run: both compute the same 45-token prefill step (a prefix-cache hit would compute a
    // 13-token step through other kernel paths, and sampling over a near-uniform random
    // model flips on ~1e-6 logit differences).
    auto colo = MakeEngine();
    Result colocated = RunAlone(*colo, p);
    auto pp = p;
    pp.prefill_only = true;
    Result first = RunAlone(*prefill, pp);
    ASSERT_TRUE(first.error.ok()) << first.error;
    ASSERT_NE(first.last.kv_export, nullptr);
    for (int c = 0; c < n; ++c) EXPECT_EQ(first.finish[c], FinishReason::kPrefillDone);
    auto handle = decode->ImportKv(first.last.kv_export);
    ASSERT_TRUE(handle.ok()) << handle.status();
    auto rest = decode->Resume(*handle, "pd");
    ASSERT_TRUE(rest.ok()) << rest.status();
    Result tail = Collect(*rest, n);
    ASSERT_TRUE(tail.error.ok()) << tail.error;
    for (int c = 0; c < n; ++c) {
      std::vector<int64_t> joined = first.tokens[c];
      joined.insert(joined.end(), tail.tokens[c].begin(), tail.tokens[c].end());
      std::vector<SampledToken> jl = first.lps[c];
      jl.insert(jl.end(), tail.lps[c].begin(), tail.lps[c].end());
      EXPECT_EQ(ExpectEquivalent(colocated.tokens[c], colocated.lps[c], joined, jl, "P/D choice " + std::to_string(c)), 15);
    }
    EXPECT_EQ(tail.last.completion_tokens, 15 * n);
    EXPECT_FALSE(decode->Resume(*handle, "again").ok()) << "a handle is used once";
  }
  EXPECT_EQ(decode->load().kv_blocks_free, decode->load().kv_blocks_total);
  EXPECT_EQ(prefill->load().kv_blocks_free, prefill->load().kv_blocks_total);
}

// A request migrated after k tokens (the gateway moved it off a dead worker) continues on
// a fresh engine with prompt + those k tokens, generated_prefix = k: greedy and seeded
// sampled continuations (with penalties) equal the undisturbed run's remaining tokens.
TEST_F(EngineTest, MigratedRequestContinuesTheUndisturbedOne) {
  std::mt19937_64 rng(21);
  auto e = MakeEngine();
  for (float temperature : {0.0f, 0.9f}) {
    auto p = Greedy("whole", RandomPrompt(rng, 33, V_), 16);
    p.sampling.temperature = temperature;
    p.sampling.top_p = 0.95f;
    p.sampling.seed = 4242;
    p.sampling.presence_penalty = 0.4f;
    p.sampling.frequency_penalty = 0.2f;
    Result whole = RunAlone(*e, p);
    ASSERT_TRUE(whole.error.ok()) << whole.error;
    ASSERT_EQ(whole.tokens[0].size(), 16u);
    for (int k : {1, 6, 15}) {
      auto q = p;
      q.request_id = "moved";
      q.prompt.insert(q.prompt.end(), whole.tokens[0].begin(), whole.tokens[0].begin() + k);
      q.generated_prefix = k;
      q.max_tokens = 16 - k;
      auto fresh = MakeEngine();  // another worker: nothing cached
      Result rest = RunAlone(*fresh, q);
      ASSERT_TRUE(rest.error.ok()) << rest.error;
      const std::vector<int64_t> want(whole.tokens[0].begin() + k, whole.tokens[0].end());
      const std::vector<SampledToken> want_lp(whole.lps[0].begin() + k, whole.lps[0].end());
      EXPECT_EQ(ExpectEquivalent(want, want_lp, rest.tokens[0], rest.lps[0],
                                 StrCat("temperature ", temperature, ", migrated after ", k)),
                16 - k);
      // Replayed one token per step, as the original decoded them: bit-identical.
      ASSERT_EQ(rest.lps[0].size(), want_lp.size());
      for (size_t i = 0; i < want_lp.size(); ++i) {
        EXPECT_EQ(rest.lps[0][i].logprob, want_lp[i].logprob) << "migrated after " << k << ", token " << i;
      }
    }
  }
  // Past --max-exact-replay-tokens the earlier output is one prefill: equal within the
  // float32 tolerance (tokens equal unless a near-tie), in far fewer steps.
  {
    auto p = Greedy("whole", RandomPrompt(rng, 33, V_), 16);
    Result whole = RunAlone(*e, p);
    ASSERT_TRUE(whole.error.ok()) << whole.error;
    EngineConfig fast;
    fast.max_exact_replay_tokens = 0;
    auto q = p;
    q.prompt.insert(q.prompt.end(), whole.tokens[0].begin(), whole.tokens[0].begin() + 6);
    q.generated_prefix = 6;
    q.max_tokens = 10;
    auto other = MakeEngine(fast);
    Result rest = RunAlone(*other, q);
    ASSERT_TRUE(rest.error.ok()) << rest.error;
    ExpectEquivalent(std::vector<int64_t>(whole.tokens[0].begin() + 6, whole.tokens[0].end()),
                     std::vector<SampledToken>(whole.lps[0].begin() + 6, whole.lps[0].end()), rest.tokens[0],
                     rest.lps[0], "one-prefill migration");
    EXPECT_LT(other->load().steps, 10u + 2u) << "the earlier output was not computed one token per step";
  }
  // The contract: n = 1, no prompt logprobs, a prefix inside the prompt.
  auto bad = Greedy("bad", {5, 6, 7}, 4);
  bad.generated_prefix = 3;
  EXPECT_FALSE(e->Submit(bad).ok());
  bad.generated_prefix = 1;
  bad.n = 2;
  EXPECT_FALSE(e->Submit(bad).ok());
}

// Admission: past --max-queued-requests (or queued prompt tokens) Submit answers
// RESOURCE_EXHAUSTED naming the limit; finished requests give their share back.
TEST_F(EngineTest, AdmissionBoundsQueuedRequestsAndPromptTokens) {
  EngineConfig cfg;
  cfg.max_queued_requests = 3;
  cfg.max_queued_prompt_tokens = 100;
  auto e = MakeEngine(cfg);
  std::mt19937_64 rng(5);
  std::vector<std::shared_ptr<OutputStream>> held;
  for (int i = 0; i < 3; ++i) {
    auto s = e->Submit(Greedy(StrCat("q", i), RandomPrompt(rng, 20, V_), 30));
    ASSERT_TRUE(s.ok()) << s.status();
    held.push_back(*s);
  }
  auto over = e->Submit(Greedy("over", RandomPrompt(rng, 20, V_), 4));
  ASSERT_FALSE(over.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(over.status())) << over.status();
  EXPECT_NE(std::string(over.status().message()).find("max-queued-requests"), std::string::npos) << over.status();
  for (auto& h : held) ASSERT_TRUE(Collect(h, 1).error.ok());
  held.clear();
  // Everything finished: room again. Two prompts of 60 tokens exceed 100 queued tokens.
  bool admitted = false;
  for (int i = 0; i < 200 && !admitted; ++i) {  // the engine drops finished requests just after their last output
    auto s = e->Submit(Greedy("again", RandomPrompt(rng, 60, V_), 30));
    admitted = s.ok();
    if (admitted) held.push_back(*s);
    else std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(admitted);
  auto big = e->Submit(Greedy("big", RandomPrompt(rng, 60, V_), 4));
  ASSERT_FALSE(big.ok());
  EXPECT_NE(std::string(big.status().message()).find("max-queued-prompt-tokens"), std::string::npos) << big.status();
  for (auto& h : held) ASSERT_TRUE(Collect(h, 1).error.ok());
}

TEST_F(EngineTest, UnclaimedImportsExpire) {
  auto m2 = Load(MkModel());
  EngineConfig dcfg;
  dcfg.num_blocks = 64;
  dcfg.import_ttl_seconds = 0.3;
  auto decode = *Engine::Create(*m2->model, dcfg);
  auto prefill = MakeEngine();
  std::mt19937_64 rng(12);
  auto p = Greedy("ttl", RandomPrompt(rng, 40, V_), 10);
  p.prefill_only = true;
  Result first = RunAlone(*prefill, p);
  ASSERT_NE(first.last.kv_export, nullptr);
  auto h = decode->ImportKv(first.last.kv_export);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(decode->load().kv_blocks_free, 64 - 3);
  for (int i = 0; i < 50 && decode->load().parked_imports > 0; ++i) usleep(100000);
  EXPECT_EQ(decode->load().kv_blocks_free, 64);
  EXPECT_FALSE(decode->Resume(*h, "late").ok());
}

// The oracle fixtures through the serving engine, all prompts at once.
TEST(EngineOracleTest, GreedyContinuationsThroughTheEngine) {
  for (const char* name : {"tiny-bf16", "tiny-fp8"}) {
    const std::string dir = SharedOracle(name);
    if (dir.empty()) {
      GTEST_SKIP() << "oracle fixture " << name << " not found (set DSV3_SHARED_DIR): skipping";
    }
    auto m = Load(dir);
    ASSERT_NE(m, nullptr);
    std::ifstream f(dir + "/golden.json");
    nlohmann::json golden = nlohmann::json::parse(f);
    EngineConfig cfg;
    cfg.num_blocks = 256;
    cfg.scheduler.max_batch_tokens = 128;  // the 300-token prompt is chunked
    auto e = *Engine::Create(*m->model, cfg);
    std::vector<std::pair<std::vector<int64_t>, std::shared_ptr<OutputStream>>> runs;
    for (const auto& p : golden["prompts"]) {
      std::vector<int64_t> want;
      for (const auto& st : p["greedy"]["steps"]) want.push_back(st["token"].get<int64_t>());
      auto g = Greedy(p["name"].get<std::string>(), p["tokens"].get<std::vector<int64_t>>(),
                      static_cast<int32_t>(want.size()));
      g.ignore_eos = true;
      runs.push_back({want, *e->Submit(g)});
    }
    for (auto& [want, s] : runs) {
      Result r = Collect(s, 1);
      ASSERT_TRUE(r.error.ok()) << r.error;
      EXPECT_EQ(r.tokens[0], want) << name;
    }
    std::printf("[engine] %s: %zu oracle prompts batched, greedy continuations identical\n", name, runs.size());
  }
}

}  // namespace
}  // namespace dsv3
