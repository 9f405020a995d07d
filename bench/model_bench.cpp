// Whole-model decode step and prefill on a checkpoint (bench/run.sh makes bench-s with
// dsv3-mkmodel and passes it in DSV3_BENCH_MODEL).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <memory>
#include <vector>

#include "absl/strings/str_split.h"
#include "bench/bench_model.h"

namespace {

using namespace dsv3;

using Loaded = BenchModel;

Loaded& Model() {
  static Loaded l = LoadBenchModel();
  return l;
}

std::vector<int64_t> Tokens(int64_t n, int64_t vocab, uint64_t seed) {
  std::vector<int64_t> t(static_cast<size_t>(n));
  uint64_t s = seed;
  for (auto& v : t) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    v = static_cast<int64_t>((s >> 33) % static_cast<uint64_t>(vocab - 1000)) + 3;
  }
  return t;
}

// One decode step for `batch` sequences, each with a 128-token context.
void BM_ModelDecodeStep(benchmark::State& state) {
  Loaded& m = Model();
  if (!m.m) return state.SkipWithError(m.error.c_str());
  const int64_t batch = state.range(0), ctx = 128, V = m.m->config().vocab_size;
  std::vector<std::unique_ptr<SequenceKvCache>> kv;
  std::vector<std::vector<int64_t>> prompts;
  std::vector<float> logits;
  for (int64_t b = 0; b < batch; ++b) {
    kv.push_back(m.m->model->NewCache());
    prompts.push_back(Tokens(ctx + 4096, V, b + 1));
    if (!m.m->model->Forward({{kv.back().get(), prompts.back().data(), ctx, 0}}, &logits).ok()) return state.SkipWithError("prefill failed");
  }
  for (auto _ : state) {
    std::vector<SequenceInput> in;
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t pos = kv[b]->length();
      in.push_back({kv[b].get(), prompts[b].data() + pos, 1, pos});
    }
    if (!m.m->model->Forward(in, &logits).ok()) return state.SkipWithError("decode failed");
    // Keep the context from growing without bound over many iterations.
    if (kv[0]->length() >= ctx + 4000) {
      for (auto& k : kv) k->set_length(ctx);
    }
  }
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(batch) * state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ModelDecodeStep)->Arg(1)->Arg(4)->Arg(16)->Arg(32)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_ModelPrefill(benchmark::State& state) {
  Loaded& m = Model();
  if (!m.m) return state.SkipWithError(m.error.c_str());
  const int64_t n = state.range(0);
  auto toks = Tokens(n, m.m->config().vocab_size, 7);
  std::vector<float> logits;
  for (auto _ : state) {
    auto kv = m.m->model->NewCache();
    if (!m.m->model->Forward({{kv.get(), toks.data(), n, 0}}, &logits).ok()) return state.SkipWithError("prefill failed");
  }
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(n) * state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ModelPrefill)->Arg(128)->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
