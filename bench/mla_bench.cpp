// MLA decode attention (one new token against a cached context), absorbed form, at
// bench-s dimensions (8 heads, kv_lora 128) and DeepSeek-V3's (128 heads, kv_lora 512).
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "common/model/mla_attention.h"
#include "common/model/sequence_kv_cache.h"

namespace {

using namespace dsv3;
using kernels::WeightType;

struct Layer {
  ModelConfig cfg;
  std::vector<std::vector<uint16_t>> store;
  AttentionWeights w;
  std::vector<uint16_t> norm;
};

WeightMatrix Bf16(Layer& l, int64_t rows, int64_t cols, std::mt19937& rng) {
  l.store.emplace_back(static_cast<size_t>(rows * cols));
  for (auto& v : l.store.back()) v = static_cast<uint16_t>(0x3c00 + (rng() & 0x3ff)) ^ ((rng() & 1) << 15);  // ~[-0.03, 0.03]
  WeightMatrix w;
  w.type = WeightType::kBF16;
  w.rows = rows;
  w.cols = cols;
  w.data = l.store.back().data();
  return w;
}

std::unique_ptr<Layer> MakeLayer(int64_t hidden, int64_t heads, int64_t q_lora, int64_t kv_lora, int64_t nope, int64_t v) {
  auto l = std::make_unique<Layer>();
  ModelConfig& c = l->cfg;
  c.hidden_size = hidden;
  c.num_attention_heads = c.num_key_value_heads = heads;
  c.q_lora_rank = q_lora;
  c.kv_lora_rank = kv_lora;
  c.qk_nope_head_dim = nope;
  c.qk_rope_head_dim = 64;
  c.v_head_dim = v;
  c.max_position_embeddings = 163840;
  c.rope_scaling.yarn = true;
  c.rope_scaling.factor = 40;
  std::mt19937 rng(3);
  l->store.reserve(8);
  l->w.q_a = Bf16(*l, q_lora, hidden, rng);
  l->w.q_b = Bf16(*l, heads * (nope + 64), q_lora, rng);
  l->w.kv_a = Bf16(*l, kv_lora + 64, hidden, rng);
  l->w.kv_b = Bf16(*l, heads * (nope + v), kv_lora, rng);
  l->w.o = Bf16(*l, hidden, heads * v, rng);
  l->norm.assign(static_cast<size_t>(std::max(q_lora, kv_lora)), 0x3f80);  // 1.0
  l->w.q_a_norm = {WeightType::kBF16, q_lora, l->norm.data()};
  l->w.kv_a_norm = {WeightType::kBF16, kv_lora, l->norm.data()};
  return l;
}

void Run(benchmark::State& state, Layer& l) {
  static auto backend = kernels::MakeCpuBackend({});
  const int64_t ctx = state.range(0);
  MlaAttention attn(l.cfg, *backend);
  SequenceKvCache kv(1, l.cfg.latent_dim());
  kv.Reserve(ctx + 1);
  std::mt19937 rng(5);
  for (int64_t i = 0; i < ctx * l.cfg.latent_dim(); ++i) kv.layer(0)[i] = static_cast<float>(rng() % 100) * 0.01f;
  kv.set_length(ctx);
  std::vector<float> x(static_cast<size_t>(l.cfg.hidden_size), 0.1f), out(x.size());
  const int64_t pos = ctx;
  for (auto _ : state) {
    attn.Forward(l.w, 0, x.data(), 1, &pos, {{&kv, ctx, 1, 0}}, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["ctx"] = static_cast<double>(ctx);
  state.SetBytesProcessed(state.iterations() * ctx * l.cfg.latent_dim() * 4);
}

void BM_MlaDecode_BenchS(benchmark::State& s) {
  static auto l = MakeLayer(512, 8, 192, 128, 64, 64);
  Run(s, *l);
}
void BM_MlaDecode_V3(benchmark::State& s) {
  static auto l = MakeLayer(7168, 128, 1536, 512, 128, 128);
  Run(s, *l);
}
BENCHMARK(BM_MlaDecode_BenchS)->Arg(512)->Arg(4096)->Arg(16384)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_MlaDecode_V3)->Arg(512)->Arg(4096)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
