// CpuBackend: the reference backend. Decode-shaped linears (m <= kGemvMaxRows) stream
// the weights once through the per-ISA GEMV kernels, split by rows over the thread pool;
// prefill-shaped ones dequantize 128-row panels to float32 and hand them to OpenBLAS
// sgemm, which beats a hand-written GEMM at those shapes (see bench/).
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <thread>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/linear_kernels.h"
#include "kernels/cpu/thread_pool.h"

namespace dsv3::kernels {
namespace {

constexpr int64_t kGemvMaxRows = 16;
// Batched decode (up to this many rows): the GEMV kernel over 16-row token chunks, each
// weight block reused from cache by every chunk, so weights stream from memory once and
// each row's result is the same whatever the batch (batch invariance). Beyond it, prefill
// GEMMs (dequantized panels + sgemm) win.
constexpr int64_t kBatchedGemvMaxRows = 64;
constexpr int64_t kGemvWeightBlock = 64;  // weight rows per cache-resident block
constexpr int64_t kPanelRows = 256;  // upper bound; see PanelRows()

class CpuBackend final : public Backend {
 public:
  CpuBackend(CpuIsa isa, int threads) : isa_(isa), pool_(threads) {
    switch (isa) {
      case CpuIsa::kAvx512: gemv_ = cpu::GemvAvx512; dequant_ = cpu::DequantAvx512; break;
      case CpuIsa::kAvx2: gemv_ = cpu::GemvAvx2; dequant_ = cpu::DequantAvx2; break;
      default: gemv_ = cpu::GemvScalar; dequant_ = cpu::DequantScalar; break;
    }
    // Parallelism is ours: OpenBLAS runs single-threaded inside our tasks.
    openblas_set_num_threads(1);
  }

  std::string name() const override { return std::string("cpu-") + CpuIsaName(isa_); }
  int num_threads() const override { return pool_.size(); }

  // SIMD kernels assume FP8 column blocks are whole vectors.
  cpu::GemvFn GemvFor(const WeightMatrix& w) const {
    if (w.type == WeightType::kF8E4M3 && w.block_cols % 16 != 0) return cpu::GemvScalar;
    return gemv_;
  }
  cpu::DequantFn DequantFor(const WeightMatrix& w) const {
    if (w.type == WeightType::kF8E4M3 && w.block_cols % 16 != 0) return cpu::DequantScalar;
    return dequant_;
  }

  // Big panels amortize sgemm's packing (256 rows measured best in bench/), but keep at
  // least two panels per thread so every thread has work.
  int64_t PanelRows(int64_t n) const {
    const int64_t want = (n + 2 * pool_.size() - 1) / (2 * pool_.size());
    return std::min<int64_t>(kPanelRows, std::max<int64_t>(64, (want + 63) / 64 * 64));
  }

  void Linear(const float* x, int64_t m, const WeightMatrix& w, float* y) override {
    if (m <= 0 || w.rows <= 0) return;
    const int64_t K = w.cols, N = w.rows;
    if (m <= kGemvMaxRows) {
      cpu::GemvFn fn = GemvFor(w);
      const int64_t work = N * K * m;
      const int64_t tasks = work < (1 << 16) ? 1 : std::min<int64_t>(pool_.size() * 4, (N + 15) / 16);
      const int64_t per = ((N + tasks - 1) / tasks + 3) / 4 * 4;
      pool_.ParallelFor(tasks, [&](int64_t t) {
        const int64_t r0 = t * per, r1 = std::min(N, r0 + per);
        if (r0 < r1) fn(x, m, K, w, r0, r1, y, N);
      });
      return;
    }
    if (m <= kBatchedGemvMaxRows && w.type != WeightType::kF32) {
      cpu::GemvFn fn = GemvFor(w);
      const int64_t blocks = (N + kGemvWeightBlock - 1) / kGemvWeightBlock;
      pool_.ParallelFor(blocks, [&](int64_t b) {
        const int64_t r0 = b * kGemvWeightBlock, r1 = std::min(N, r0 + kGemvWeightBlock);
        for (int64_t c = 0; c < m; c += kGemvMaxRows) {
          fn(x + c * K, std::min(kGemvMaxRows, m - c), K, w, r0, r1, y + c * N, N);
        }
      });
      return;
    }
    const int64_t panel = PanelRows(N);
    if (w.type == WeightType::kF32) {
      const int64_t tasks = (N + panel - 1) / panel;
      pool_.ParallelFor(tasks, [&](int64_t t) {
        const int64_t r0 = t * panel, n = std::min(panel, N - r0);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, K, 1.0f, x, K,
                    static_cast<const float*>(w.data) + r0 * K, K, 0.0f, y + r0, N);
      });
      return;
    }
    cpu::DequantFn dq = DequantFor(w);
    const int64_t tasks = (N + panel - 1) / panel;
    pool_.ParallelFor(tasks, [&](int64_t t) {
      thread_local std::vector<float> buf;
      const int64_t r0 = t * panel, n = std::min(panel, N - r0);
      buf.resize(static_cast<size_t>(n * K));
      dq(w, r0, n, buf.data());
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, K, 1.0f, x, K, buf.data(), K,
                  0.0f, y + r0, N);
    });
  }

  void LinearTransposed(const float* x, int64_t m, const WeightMatrix& w, float* y) override {
    thread_local std::vector<float> row;
    row.resize(static_cast<size_t>(w.cols));
    cpu::DequantFn dq = DequantFor(w);
    std::fill_n(y, m * w.cols, 0.0f);
    for (int64_t r = 0; r < w.rows; ++r) {
      dq(w, r, 1, row.data());
      for (int64_t i = 0; i < m; ++i) {
        const float a = x[i * w.rows + r];
        float* yi = y + i * w.cols;
        for (int64_t c = 0; c < w.cols; ++c) yi[c] += a * row[c];
      }
    }
  }

  void DequantizeRows(const WeightMatrix& w, int64_t row0, int64_t n, float* out) override {
    DequantFor(w)(w, row0, n, out);
  }

  void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
            int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) override {
    if (m <= 0 || n <= 0) return;
    const auto ta = trans_a ? CblasTrans : CblasNoTrans;
    const auto tb = trans_b ? CblasTrans : CblasNoTrans;
    const int64_t tasks = m * n * k < (1 << 20) ? 1 : std::min<int64_t>(pool_.size(), m);
    const int64_t per = (m + tasks - 1) / tasks;
    pool_.ParallelFor(tasks, [&](int64_t t) {
      const int64_t m0 = t * per, mm = std::min(per, m - m0);
      if (mm <= 0) return;
      const float* ap = trans_a ? a + m0 : a + m0 * lda;
      cblas_sgemm(CblasRowMajor, ta, tb, mm, n, k, alpha, ap, lda, b, ldb, beta, c + m0 * ldc, ldc);
    });
  }

  void RmsNorm(const float* x, const WeightVector& w, int64_t m, int64_t n, float eps, float* y) override {
    for (int64_t i = 0; i < m; ++i) {
      const float* xr = x + i * n;
      float* yr = y + i * n;
      double ss = 0;
      for (int64_t j = 0; j < n; ++j) ss += static_cast<double>(xr[j]) * xr[j];
      const float inv = 1.0f / std::sqrt(static_cast<float>(ss / n) + eps);
      for (int64_t j = 0; j < n; ++j) {
        const float g = w.type == WeightType::kBF16
                            ? cpu::Bf16ToF32(static_cast<const uint16_t*>(w.data)[j])
                            : static_cast<const float*>(w.data)[j];
        yr[j] = (xr[j] * inv) * g;
      }
    }
  }

  void SiluMul(const float* gate, const float* up, int64_t n, float* out) override {
    for (int64_t i = 0; i < n; ++i) {
      const float g = gate[i];
      out[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
  }

  void Rope(float* x, int64_t tokens, int64_t heads, int64_t token_stride, int64_t head_stride,
            int64_t dim, const int64_t* positions, const float* inv_freq, float attn_factor) override {
    const int64_t half = dim / 2;
    std::vector<float> cs(static_cast<size_t>(dim));
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t i = 0; i < half; ++i) {
        // float32 angle as torch.outer(t, freqs) computes it; cos/sin rounded from double.
        const float ang = static_cast<float>(positions[t]) * inv_freq[i];
        cs[2 * i] = static_cast<float>(std::cos(static_cast<double>(ang))) * attn_factor;
        cs[2 * i + 1] = static_cast<float>(std::sin(static_cast<double>(ang))) * attn_factor;
      }
      for (int64_t h = 0; h < heads; ++h) {
        float* v = x + t * token_stride + h * head_stride;
        for (int64_t i = 0; i < half; ++i) {
          const float a = v[2 * i], b = v[2 * i + 1], c = cs[2 * i], s = cs[2 * i + 1];
          v[2 * i] = a * c - b * s;
          v[2 * i + 1] = a * s + b * c;
        }
      }
    }
  }

  void SoftmaxRows(float* x, int64_t rows, int64_t ld, const int64_t* valid) override {
    for (int64_t r = 0; r < rows; ++r) {
      float* row = x + r * ld;
      const int64_t n = valid[r];
      float mx = -INFINITY;
      for (int64_t j = 0; j < n; ++j) mx = std::max(mx, row[j]);
      double sum = 0;
      for (int64_t j = 0; j < n; ++j) {
        row[j] = std::exp(row[j] - mx);
        sum += row[j];
      }
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t j = 0; j < n; ++j) row[j] *= inv;
      for (int64_t j = n; j < ld; ++j) row[j] = 0.0f;
    }
  }

  void Embedding(const WeightMatrix& e, const int64_t* ids, int64_t n, float* out) override {
    for (int64_t i = 0; i < n; ++i) dequant_(e, ids[i], 1, out + i * e.cols);
  }

  void ParallelFor(int64_t n, const std::function<void(int64_t)>& fn) override { pool_.ParallelFor(n, fn); }

 private:
  CpuIsa isa_;
  ThreadPool pool_;
  cpu::GemvFn gemv_ = nullptr;
  cpu::DequantFn dequant_ = nullptr;
};

}  // namespace

std::unique_ptr<Backend> MakeCpuBackend(const CpuBackendOptions& opts, std::string* error) {
  const CpuIsa best = DetectCpuIsa();
  CpuIsa isa = opts.isa == CpuIsa::kAuto ? best : opts.isa;
  if (static_cast<int>(isa) > static_cast<int>(best)) {
    if (error) *error = std::string("CPU does not support ISA '") + CpuIsaName(isa) + "' (best: " + CpuIsaName(best) + ")";
    return nullptr;
  }
  int threads = opts.threads > 0 ? opts.threads : static_cast<int>(std::thread::hardware_concurrency());
  if (threads <= 0) threads = 1;
  return std::make_unique<CpuBackend>(isa, threads);
}

}  // namespace dsv3::kernels
