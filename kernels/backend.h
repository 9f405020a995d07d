// Backend: the one backend-neutral kernel interface. The model (common/model) is written
// against it; the CPU backend (kernels/cpu) is the reference, the CUDA backend
// (kernels/cuda) implements the same calls. All tensors are float32 row-major unless a
// weight type says otherwise; shapes are in the comments.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "kernels/weight_matrix.h"

namespace dsv3::kernels {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual int num_threads() const = 0;

  // y[m, w.rows] = x[m, w.cols] * W^T, weights dequantized on the fly, fp32 accumulation.
  virtual void Linear(const float* x, int64_t m, const WeightMatrix& w, float* y) = 0;
  // y[m, w.cols] = x[m, w.rows] * W (the transposed product), serial on the calling
  // thread: MLA's absorbed query uses it on per-head slices of kv_b.
  virtual void LinearTransposed(const float* x, int64_t m, const WeightMatrix& w, float* y) = 0;
  // out[n, w.cols] = rows [row0, row0 + n) of W in float32 (exact upcast).
  virtual void DequantizeRows(const WeightMatrix& w, int64_t row0, int64_t n, float* out) = 0;
  // C[m, n] = alpha * op(A)[m, k] * op(B)[k, n] + beta * C, all float32, leading dims given.
  virtual void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                    float* c, int64_t ldc) = 0;
  // y[m, n] = x / sqrt(mean(x^2) + eps) * w   (row-wise over n)
  virtual void RmsNorm(const float* x, const WeightVector& w, int64_t m, int64_t n, float eps,
                       float* y) = 0;
  // out[i] = silu(gate[i]) * up[i]
  virtual void SiluMul(const float* gate, const float* up, int64_t n, float* out) = 0;
  // In-place RoPE on consecutive pairs (x[2i], x[2i+1]) of `dim`-wide vectors:
  // vector (t, h) starts at x + t * token_stride + h * head_stride; angle = pos[t] * inv_freq[i].
  virtual void Rope(float* x, int64_t tokens, int64_t heads, int64_t token_stride,
                    int64_t head_stride, int64_t dim, const int64_t* positions,
                    const float* inv_freq, float attn_factor) = 0;
  // Row-wise softmax over the first `valid[r]` entries of each of `rows` rows of width
  // `ld`; entries past valid[r] are set to 0.
  virtual void SoftmaxRows(float* x, int64_t rows, int64_t ld, const int64_t* valid) = 0;
  // out[n, cols] = embedding rows ids[i] of E [vocab, cols] (BF16/F32) in float32.
  virtual void Embedding(const WeightMatrix& e, const int64_t* ids, int64_t n, float* out) = 0;

  // Runs fn(0..n-1) on the backend's workers; nested calls run inline on the caller.
  virtual void ParallelFor(int64_t n, const std::function<void(int64_t)>& fn) = 0;
};

enum class CpuIsa { kAuto, kScalar, kAvx2, kAvx512 };
const char* CpuIsaName(CpuIsa isa);
// The best ISA this CPU supports (CPUID at run time).
CpuIsa DetectCpuIsa();

struct CpuBackendOptions {
  CpuIsa isa = CpuIsa::kAuto;  // kAuto: DetectCpuIsa(); asking for more than the CPU has fails
  int threads = 0;             // 0: hardware concurrency
};
// Returns nullptr and sets *error when the requested ISA is not supported here.
std::unique_ptr<Backend> MakeCpuBackend(const CpuBackendOptions& opts, std::string* error = nullptr);

}  // namespace dsv3::kernels
