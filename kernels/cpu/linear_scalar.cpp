// Portable reference kernels: plain C++, no ISA assumptions.
#include <cmath>
#include <cstring>

#include "kernels/cpu/linear_kernels.h"

namespace dsv3::kernels::cpu {

float Bf16ToF32(uint16_t v) {
  uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float F16ToF32(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  const uint32_t man = h & 0x3ff;
  float f;
  if (exp == 0) {
    f = std::ldexp(static_cast<float>(man), -24);
  } else if (exp == 31) {
    f = man ? NAN : INFINITY;
  } else {
    f = std::ldexp(static_cast<float>(man | 0x400), static_cast<int>(exp) - 25);
  }
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  bits |= sign;
  std::memcpy(&f, &bits, 4);
  return f;
}

float E4m3ToF32(uint8_t v) {
  const int exp = (v >> 3) & 0xf;
  const int man = v & 0x7;
  float f;
  if (exp == 0xf && man == 0x7) {
    f = NAN;
  } else if (exp == 0) {
    f = std::ldexp(static_cast<float>(man), -9);
  } else {
    f = std::ldexp(static_cast<float>(8 + man), exp - 10);
  }
  return (v & 0x80) ? -f : f;
}

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
