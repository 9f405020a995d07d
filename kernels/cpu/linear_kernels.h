// Per-ISA inner kernels behind CpuBackend::Linear / DequantizeRows. Each ISA file
// implements the same two functions; cpu_backend.cpp picks one set at construction.
//
// Gemv: y[mi * ldy + r] = dot(x[mi * ldx + 0..cols), W[r, 0..cols)) for mi < m and
// r in [r0, r1). Each dot product uses the same reduction order whatever m is, so a
// token's result does not depend on which other tokens share its batch.
#pragma once

#include <cstdint>

#include "kernels/number_formats.h"
#include "kernels/weight_matrix.h"

namespace dsv3::kernels::cpu {

using GemvFn = void (*)(const float* x, int64_t m, int64_t ldx, const WeightMatrix& w,
                        int64_t r0, int64_t r1, float* y, int64_t ldy);
using DequantFn = void (*)(const WeightMatrix& w, int64_t row0, int64_t n, float* out);

void GemvScalar(const float*, int64_t, int64_t, const WeightMatrix&, int64_t, int64_t, float*, int64_t);
void GemvAvx2(const float*, int64_t, int64_t, const WeightMatrix&, int64_t, int64_t, float*, int64_t);
void GemvAvx512(const float*, int64_t, int64_t, const WeightMatrix&, int64_t, int64_t, float*, int64_t);
void DequantScalar(const WeightMatrix&, int64_t, int64_t, float*);
void DequantAvx2(const WeightMatrix&, int64_t, int64_t, float*);
void DequantAvx512(const WeightMatrix&, int64_t, int64_t, float*);

// Scalar element conversions, shared by every ISA for tails and by tests.
using kernels::Bf16ToF32;
using kernels::E4m3ToF32;
using kernels::F16ToF32;
// Scale of FP8 element (row, col): scale_inv[row / block_rows][col / block_cols].
inline float Fp8Scale(const WeightMatrix& w, int64_t row, int64_t col) {
  return w.scale_inv[((row + w.scale_row0) / w.block_rows) * w.scale_cols() + col / w.block_cols];
}

}  // namespace dsv3::kernels::cpu
