// Constrained decoding cost: one JsonConstraint::Mask over the real DeepSeek-V3 vocabulary
// (129,280 ids) in the states a JSON object passes through, against the baseline of what
// every decode step does anyway for that row: one pass over the logits (max + exp sum).
//   DSV3_BENCH_TOKENIZER=models/tiny-bf16 build/bench/dsv3_bench_json_constraint
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdlib>
#include <random>

#include "common/sampling/json_constraint.h"
#include "services/attention-worker/engine/token_bytes.h"

namespace {

using namespace dsv3;

std::shared_ptr<const TokenBytes> Vocab() {
  static std::shared_ptr<const TokenBytes> v = [] {
    const char* dir = std::getenv("DSV3_BENCH_TOKENIZER");
    auto t = LoadTokenBytes(dir ? dir : "models/tiny-bf16", 129280, 1);
    return t.ok() ? *t : nullptr;
  }();
  return v;
}

// The text fed before masking, by state.
const char* const kPrefixes[] = {"", "{", "{\"key", "{\"key\": ", "{\"key\": 12", "{\"key\": \"some text"};

void JsonMask(benchmark::State& state) {
  auto vocab = Vocab();
  if (!vocab) {
    state.SkipWithError("no tokenizer.json (set DSV3_BENCH_TOKENIZER)");
    return;
  }
  JsonConstraint json(vocab);
  // Feed the prefix through tokens of one byte each where they exist.
  for (const char* p = kPrefixes[state.range(0)]; *p; ++p) {
    for (size_t id = 0; id < vocab->bytes.size(); ++id) {
      if (vocab->bytes[id].size() == 1 && vocab->bytes[id][0] == *p) {
        json.Accept(static_cast<int64_t>(id));
        break;
      }
    }
  }
  std::vector<uint8_t> allowed;
  int64_t n = 0;
  for (auto _ : state) {
    json.Mask(&allowed);
    benchmark::DoNotOptimize(allowed.data());
  }
  for (uint8_t a : allowed) n += a;
  state.counters["allowed"] = static_cast<double>(n);
  state.SetLabel(kPrefixes[state.range(0)]);
}
BENCHMARK(JsonMask)->DenseRange(0, 5)->Unit(benchmark::kMillisecond);

void LogitsPassBaseline(benchmark::State& state) {
  std::vector<float> row(129280);
  std::mt19937 rng(1);
  std::normal_distribution<float> d;
  for (auto& x : row) x = d(rng);
  for (auto _ : state) {
    float mx = row[0];
    for (float x : row) mx = x > mx ? x : mx;
    double sum = 0;
    for (float x : row) sum += std::exp(static_cast<double>(x - mx));
    benchmark::DoNotOptimize(sum);
  }
}
BENCHMARK(LogitsPassBaseline)->Unit(benchmark::kMillisecond);

}  // namespace
