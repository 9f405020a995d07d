// Linear layers at decode (m = 1..16) and prefill (m = 128..1024) shapes, BF16 and FP8
// weights through CpuBackend::Linear, against OpenBLAS sgemm/sgemv on float32 weights of
// the same shape, all in one run. Counters: weight bytes streamed per second (decode),
// weight rows per second, FLOP/s (prefill).
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/backend.h"

namespace {

using namespace dsv3::kernels;

Backend& Cpu() {
  static auto b = MakeCpuBackend({});
  return *b;
}

// Decode shapes: DeepSeek-V3's hidden size as K; 16384 rows (235 MB in BF16: fits a large
// L3, as on some machines of this class) and 131072 rows (1.9 GB: streams from DRAM).

// Prefill shape.
constexpr int64_t kPrefillN = 2048, kPrefillK = 2048;

struct Weights {
  std::vector<uint8_t> data;
  std::vector<float> scales;
  WeightMatrix w;
};

Weights Make(WeightType t, int64_t n, int64_t k) {
  Weights r;
  std::mt19937_64 rng(1);
  const int64_t esz = t == WeightType::kF32 ? 4 : t == WeightType::kF8E4M3 ? 1 : 2;
  r.data.resize(static_cast<size_t>(n * k * esz));
  // Normal (never subnormal) values of a realistic magnitude: subnormal operands would
  // measure the CPU's microcode assists, not the kernels.
  if (t == WeightType::kBF16) {
    uint16_t* p = reinterpret_cast<uint16_t*>(r.data.data());
    for (int64_t i = 0; i < n * k; ++i) {
      const uint64_t v = rng();
      p[i] = static_cast<uint16_t>(0x3c00 | (v & 0x3ff) | ((v >> 20 & 1) << 15));
    }
  } else if (t == WeightType::kF8E4M3) {
    for (int64_t i = 0; i < n * k; ++i) {
      const uint64_t v = rng();
      r.data[i] = static_cast<uint8_t>(0x08 + v % 0x70) | ((v >> 20 & 1) << 7);
    }
  }
  if (t == WeightType::kF32) {
    float* f = reinterpret_cast<float*>(r.data.data());
    for (int64_t i = 0; i < n * k; ++i) f[i] = static_cast<float>(rng() % 1000) * 1e-3f;
  }
  r.w.type = t;
  r.w.rows = n;
  r.w.cols = k;
  r.w.data = r.data.data();
  if (t == WeightType::kF8E4M3) {
    r.scales.assign(static_cast<size_t>(((n + 127) / 128) * ((k + 127) / 128)), 0.01f);
    r.w.scale_inv = r.scales.data();
  }
  return r;
}

const Weights& Cached(WeightType t, int64_t n, int64_t k) {
  static std::vector<std::pair<std::tuple<int, int64_t, int64_t>, Weights>> cache;
  for (auto& [key, w] : cache) {
    if (key == std::make_tuple(static_cast<int>(t), n, k)) return w;
  }
  cache.emplace_back(std::make_tuple(static_cast<int>(t), n, k), Make(t, n, k));
  return cache.back().second;
}

void Decode(benchmark::State& state, WeightType t) {
  const int64_t m = state.range(0), kDecodeN = state.range(1), kDecodeK = state.range(2);
  const Weights& w = Cached(t, kDecodeN, kDecodeK);
  std::vector<float> x(static_cast<size_t>(m * kDecodeK), 0.5f), y(static_cast<size_t>(m * kDecodeN));
  for (auto _ : state) {
    Cpu().Linear(x.data(), m, w.w, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  const int64_t bytes = static_cast<int64_t>(w.data.size() + w.scales.size() * 4);
  state.SetBytesProcessed(state.iterations() * bytes);
  state.counters["rows/s"] = benchmark::Counter(static_cast<double>(kDecodeN) * state.iterations(), benchmark::Counter::kIsRate);
}
void BM_DecodeLinear_BF16(benchmark::State& s) { Decode(s, WeightType::kBF16); }
void BM_DecodeLinear_FP8(benchmark::State& s) { Decode(s, WeightType::kF8E4M3); }
// (m, rows, cols): V3-hidden rows in and beyond a large L3, and bench-s's LM head.
BENCHMARK(BM_DecodeLinear_BF16)->ArgsProduct({{1, 2, 4, 8, 16}, {16384, 131072}, {7168}})->ArgsProduct({{1, 16, 32, 64, 128}, {129280}, {512}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_DecodeLinear_FP8)->ArgsProduct({{1, 2, 4, 8, 16}, {16384, 131072}, {7168}})->Args({1, 129280, 512})->Unit(benchmark::kMillisecond)->UseRealTime();

// OpenBLAS on float32 weights of the decode shape (its own threads: all cores).
void BM_DecodeOpenBlas_F32(benchmark::State& state) {
  const int64_t m = state.range(0), kDecodeN = state.range(1), kDecodeK = 7168;
  const Weights& w = Cached(WeightType::kF32, kDecodeN, kDecodeK);
  std::vector<float> x(static_cast<size_t>(m * kDecodeK), 0.5f), y(static_cast<size_t>(m * kDecodeN));
  openblas_set_num_threads(Cpu().num_threads());
  const float* wf = reinterpret_cast<const float*>(w.data.data());
  for (auto _ : state) {
    if (m == 1) {
      cblas_sgemv(CblasRowMajor, CblasNoTrans, kDecodeN, kDecodeK, 1.0f, wf, kDecodeK, x.data(), 1, 0.0f, y.data(), 1);
    } else {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, kDecodeN, kDecodeK, 1.0f, x.data(), kDecodeK, wf,
                  kDecodeK, 0.0f, y.data(), kDecodeN);
    }
    benchmark::DoNotOptimize(y.data());
  }
  openblas_set_num_threads(1);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(w.data.size()));
  state.counters["rows/s"] = benchmark::Counter(static_cast<double>(kDecodeN) * state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_DecodeOpenBlas_F32)->ArgsProduct({{1, 16}, {16384}})->Unit(benchmark::kMillisecond)->UseRealTime();

void Prefill(benchmark::State& state, WeightType t) {
  const int64_t m = state.range(0);
  const Weights& w = Cached(t, kPrefillN, kPrefillK);
  std::vector<float> x(static_cast<size_t>(m * kPrefillK), 0.5f), y(static_cast<size_t>(m * kPrefillN));
  const bool blas = state.range(1) != 0;
  if (blas) openblas_set_num_threads(Cpu().num_threads());
  for (auto _ : state) {
    if (blas) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, kPrefillN, kPrefillK, 1.0f, x.data(), kPrefillK,
                  reinterpret_cast<const float*>(w.data.data()), kPrefillK, 0.0f, y.data(), kPrefillN);
    } else {
      Cpu().Linear(x.data(), m, w.w, y.data());
    }
    benchmark::DoNotOptimize(y.data());
  }
  if (blas) openblas_set_num_threads(1);
  state.counters["FLOPS"] = benchmark::Counter(2.0 * m * kPrefillN * kPrefillK * state.iterations(), benchmark::Counter::kIsRate);
}
void BM_PrefillLinear_BF16(benchmark::State& s) { Prefill(s, WeightType::kBF16); }
void BM_PrefillLinear_FP8(benchmark::State& s) { Prefill(s, WeightType::kF8E4M3); }
void BM_PrefillOpenBlas_F32(benchmark::State& s) { Prefill(s, WeightType::kF32); }
BENCHMARK(BM_PrefillLinear_BF16)->ArgsProduct({{128, 256, 512, 1024}, {0}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_PrefillLinear_FP8)->ArgsProduct({{128, 256, 512, 1024}, {0}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_PrefillOpenBlas_F32)->ArgsProduct({{128, 256, 512, 1024}, {1}})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
