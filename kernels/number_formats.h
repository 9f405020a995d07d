// Scalar conversions between float32 and the storage formats of DeepSeek checkpoints and
// the expert wire (BF16, F16, FP8 e4m3fn). The one copy of these rules: kernels, the wire
// encoder and the checkpoint generator all use it.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace dsv3::kernels {

inline float Bf16ToF32(uint16_t v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round to nearest even; NaN stays a quiet NaN.
inline uint16_t F32ToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

inline float F16ToF32(uint16_t h) {
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
  return (h & 0x8000u) ? -f : f;
}

// e4m3fn: bias 7, no infinities, 0x7f / 0xff are NaN.
inline float E4m3ToF32(uint8_t v) {
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

}  // namespace dsv3::kernels
