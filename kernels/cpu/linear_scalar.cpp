// Portable reference kernels: plain C++, no ISA assumptions.
#include <cmath>
#include <cstring>

#include "kernels/cpu/linear_kernels.h"

namespace dsv3::kernels::cpu {

namespace {

inline float Element(const WeightMatrix& w, int64_t r, int64_t c) {
  const int64_t i = r * w.cols + c;
  switch (w.type) {
    case WeightType::kF32: return static_cast<const float*>(w.data)[i];
    case WeightType::kBF16: return Bf16ToF32(static_cast<const uint16_t*>(w.data)[i]);
    case WeightType::kF16: return F16ToF32(static_cast<const uint16_t*>(w.data)[i]);
    case WeightType::kF8E4M3:
      return E4m3ToF32(static_cast<const uint8_t*>(w.data)[i]) * Fp8Scale(w, r, c);
  }
  return 0;
}

}  // namespace

void GemvScalar(const float* x, int64_t m, int64_t ldx, const WeightMatrix& w, int64_t r0,
                int64_t r1, float* y, int64_t ldy) {
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t mi = 0; mi < m; ++mi) {
      const float* xr = x + mi * ldx;
      float acc = 0;
      for (int64_t c = 0; c < w.cols; ++c) acc += Element(w, r, c) * xr[c];
      y[mi * ldy + r] = acc;
    }
  }
}

void DequantScalar(const WeightMatrix& w, int64_t row0, int64_t n, float* out) {
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < w.cols; ++c) out[r * w.cols + c] = Element(w, row0 + r, c);
  }
}

}  // namespace dsv3::kernels::cpu
