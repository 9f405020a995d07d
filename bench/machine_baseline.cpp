// Machine baselines measured in the same run as the kernels: memory read bandwidth and
// float32 FMA peak, both on all threads of the backend's pool.
#include <benchmark/benchmark.h>
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "kernels/backend.h"

namespace {

using dsv3::kernels::Backend;

Backend& Pool() {
  static auto b = dsv3::kernels::MakeCpuBackend({});
  return *b;
}

// Eight interleaved read streams per thread with 64-byte loads: the access pattern the
// GEMV kernels use (several weight rows at once), so the baseline is the best this
// machine reads, not a single-stream latency bound.
__attribute__((target("avx512f"))) float SumStreams512(const float* p, size_t n) {
  const size_t per = n / 8 / 16 * 16;
  __m512 a[8];
  for (int s = 0; s < 8; ++s) a[s] = _mm512_setzero_ps();
  for (size_t i = 0; i < per; i += 16) {
    for (int s = 0; s < 8; ++s) a[s] = _mm512_add_ps(a[s], _mm512_loadu_ps(p + s * per + i));
  }
  __m512 t = a[0];
  for (int s = 1; s < 8; ++s) t = _mm512_add_ps(t, a[s]);
  return _mm512_reduce_add_ps(t);
}

__attribute__((target("avx2"))) float SumStreams256(const float* p, size_t n) {
  const size_t per = n / 8 / 8 * 8;
  __m256 a[8];
  for (int s = 0; s < 8; ++s) a[s] = _mm256_setzero_ps();
  for (size_t i = 0; i < per; i += 8) {
    for (int s = 0; s < 8; ++s) a[s] = _mm256_add_ps(a[s], _mm256_loadu_ps(p + s * per + i));
  }
  float out[8];
  _mm256_storeu_ps(out, a[0]);
  return out[0];
}

// Streams a buffer far larger than the caches, split over the pool's threads.
void BM_MemoryReadBandwidth(benchmark::State& state) {
  const size_t bytes = static_cast<size_t>(state.range(0)) << 20;
  std::vector<float> buf(bytes / 4, 1.0f);
  Backend& b = Pool();
  const int64_t parts = b.num_threads();
  const size_t per = buf.size() / parts;
  const bool avx512 = dsv3::kernels::DetectCpuIsa() == dsv3::kernels::CpuIsa::kAvx512;
  for (auto _ : state) {
    std::vector<float> sums(parts);
    b.ParallelFor(parts, [&](int64_t t) {
      sums[t] = avx512 ? SumStreams512(buf.data() + t * per, per) : SumStreams256(buf.data() + t * per, per);
    });
    benchmark::DoNotOptimize(sums.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(bytes));
  state.counters["threads"] = static_cast<double>(parts);
}
// Sizes (MiB) of the decode benchmarks' weights: FP8/BF16 at 16384 and 131072 rows.
BENCHMARK(BM_MemoryReadBandwidth)->Arg(112)->Arg(224)->Arg(896)->Arg(1792)->Unit(benchmark::kMillisecond)->UseRealTime();

__attribute__((target("avx512f"))) float FmaLoop512(int64_t iters) {
  __m512 a[12];
  const __m512 x = _mm512_set1_ps(1.0000001f), y = _mm512_set1_ps(0.9999999f);
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(static_cast<float>(i));
  for (int64_t it = 0; it < iters; ++it) {
    for (int i = 0; i < 12; ++i) a[i] = _mm512_fmadd_ps(a[i], x, y);
  }
  __m512 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, a[i]);
  return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) float FmaLoop256(int64_t iters) {
  __m256 a[12];
  const __m256 x = _mm256_set1_ps(1.0000001f), y = _mm256_set1_ps(0.9999999f);
  for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(static_cast<float>(i));
  for (int64_t it = 0; it < iters; ++it) {
    for (int i = 0; i < 12; ++i) a[i] = _mm256_fmadd_ps(a[i], x, y);
  }
  float out[8];
  _mm256_storeu_ps(out, a[0]);
  return out[0];
}

// float32 FMA peak: 12 independent FMA chains per thread (enough to cover latency).
void BM_Fp32FmaPeak(benchmark::State& state) {
  Backend& b = Pool();
  const bool avx512 = dsv3::kernels::DetectCpuIsa() == dsv3::kernels::CpuIsa::kAvx512;
  const int64_t iters = 1 << 22, parts = b.num_threads();
  for (auto _ : state) {
    std::vector<float> r(parts);
    b.ParallelFor(parts, [&](int64_t t) { r[t] = avx512 ? FmaLoop512(iters) : FmaLoop256(iters); });
    benchmark::DoNotOptimize(r.data());
  }
  const double flops = 2.0 * 12 * (avx512 ? 16 : 8) * iters * parts;
  state.counters["FLOPS"] = benchmark::Counter(flops * state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Fp32FmaPeak)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
