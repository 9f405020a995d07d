// AVX2 + FMA + F16C kernels: 8-wide version of linear_avx512.cpp, scalar column tails.
#include <immintrin.h>

#include "kernels/cpu/linear_kernels.h"

namespace dsv3::kernels::cpu {
namespace {

constexpr int64_t Esz(WeightType t) { return t == WeightType::kF32 ? 4 : t == WeightType::kF8E4M3 ? 1 : 2; }

template <WeightType T>
inline __m256 LoadW(const uint8_t* row, int64_t c, __m256 scale256) {
  if constexpr (T == WeightType::kF32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + c);
  } else if constexpr (T == WeightType::kBF16) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(reinterpret_cast<const uint16_t*>(row) + c));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
  } else if constexpr (T == WeightType::kF16) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(reinterpret_cast<const uint16_t*>(row) + c));
    return _mm256_cvtph_ps(v);
  } else {
    __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + c));
    __m128i h = _mm_cvtepu8_epi16(b);
    __m128i mag = _mm_slli_epi16(_mm_and_si128(h, _mm_set1_epi16(0x7f)), 7);
    __m128i sgn = _mm_slli_epi16(_mm_and_si128(h, _mm_set1_epi16(0x80)), 8);
    return _mm256_mul_ps(_mm256_cvtph_ps(_mm_or_si128(mag, sgn)), scale256);
  }
}

template <WeightType T>
inline float ScalarW(const WeightMatrix& w, const uint8_t* row, int64_t r, int64_t c) {
  if constexpr (T == WeightType::kF32) return reinterpret_cast<const float*>(row)[c];
  if constexpr (T == WeightType::kBF16) return Bf16ToF32(reinterpret_cast<const uint16_t*>(row)[c]);
  if constexpr (T == WeightType::kF16) return F16ToF32(reinterpret_cast<const uint16_t*>(row)[c]);
  return E4m3ToF32(row[c]) * Fp8Scale(w, r, c);
}

inline float Hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

template <WeightType T, int R, int MT>
inline void Block(const float* x, int64_t ldx, const WeightMatrix& w, int64_t r, float* y, int64_t ldy) {
  const int64_t K = w.cols;
  const int64_t kfull = K / 8 * 8;
  const uint8_t* rows[R];
  const float* srow[R];
  for (int j = 0; j < R; ++j) {
    rows[j] = static_cast<const uint8_t*>(w.data) + (r + j) * K * Esz(T);
    srow[j] = T == WeightType::kF8E4M3 ? w.scale_inv + ((r + j + w.scale_row0) / w.block_rows) * w.scale_cols() : nullptr;
  }
  __m256 acc[MT][R];
  for (int mi = 0; mi < MT; ++mi)
    for (int j = 0; j < R; ++j) acc[mi][j] = _mm256_setzero_ps();
  const int64_t blk = T == WeightType::kF8E4M3 ? w.block_cols : (K + 8);
  __m256 s256[R];
  for (int j = 0; j < R; ++j) s256[j] = _mm256_setzero_ps();
  for (int64_t cb = 0; cb < kfull; cb += blk) {
    if constexpr (T == WeightType::kF8E4M3) {
      for (int j = 0; j < R; ++j) s256[j] = _mm256_set1_ps(srow[j][cb / blk] * 256.0f);
    }
    const int64_t cend = cb + blk < kfull ? cb + blk : kfull;
    for (int64_t c = cb; c < cend; c += 8) {
      __m256 wv[R];
      for (int j = 0; j < R; ++j) wv[j] = LoadW<T>(rows[j], c, s256[j]);
      for (int mi = 0; mi < MT; ++mi) {
        __m256 xv = _mm256_loadu_ps(x + mi * ldx + c);
        for (int j = 0; j < R; ++j) acc[mi][j] = _mm256_fmadd_ps(wv[j], xv, acc[mi][j]);
      }
    }
  }
  for (int mi = 0; mi < MT; ++mi) {
    for (int j = 0; j < R; ++j) {
      float s = Hsum(acc[mi][j]);
      for (int64_t c = kfull; c < K; ++c) s += ScalarW<T>(w, rows[j], r + j, c) * x[mi * ldx + c];
      y[mi * ldy + r + j] = s;
    }
  }
}

template <WeightType T, int MT>
void Rows(const float* x, int64_t ldx, const WeightMatrix& w, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) Block<T, 4, MT>(x, ldx, w, r, y, ldy);
  for (; r < r1; ++r) Block<T, 1, MT>(x, ldx, w, r, y, ldy);
}

template <WeightType T>
void GemvT(const float* x, int64_t m, int64_t ldx, const WeightMatrix& w, int64_t r0, int64_t r1,
           float* y, int64_t ldy) {
  for (int64_t m0 = 0; m0 < m; m0 += 2) {
    if (m - m0 >= 2) {
      Rows<T, 2>(x + m0 * ldx, ldx, w, r0, r1, y + m0 * ldy, ldy);
    } else {
      Rows<T, 1>(x + m0 * ldx, ldx, w, r0, r1, y + m0 * ldy, ldy);
    }
  }
}

template <WeightType T>
void DequantT(const WeightMatrix& w, int64_t row0, int64_t n, float* out) {
  const int64_t K = w.cols;
  const int64_t kfull = K / 8 * 8;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = row0 + i;
    const uint8_t* row = static_cast<const uint8_t*>(w.data) + r * K * Esz(T);
    const float* srow = T == WeightType::kF8E4M3 ? w.scale_inv + ((r + w.scale_row0) / w.block_rows) * w.scale_cols() : nullptr;
    float* o = out + i * K;
    for (int64_t c = 0; c < kfull; c += 8) {
      __m256 s = T == WeightType::kF8E4M3 ? _mm256_set1_ps(srow[c / w.block_cols] * 256.0f) : _mm256_setzero_ps();
      _mm256_storeu_ps(o + c, LoadW<T>(row, c, s));
    }
    for (int64_t c = kfull; c < K; ++c) o[c] = ScalarW<T>(w, row, r, c);
  }
}

}  // namespace

void GemvAvx2(const float* x, int64_t m, int64_t ldx, const WeightMatrix& w, int64_t r0, int64_t r1,
              float* y, int64_t ldy) {
  switch (w.type) {
    case WeightType::kF32: GemvT<WeightType::kF32>(x, m, ldx, w, r0, r1, y, ldy); break;
    case WeightType::kBF16: GemvT<WeightType::kBF16>(x, m, ldx, w, r0, r1, y, ldy); break;
    case WeightType::kF16: GemvT<WeightType::kF16>(x, m, ldx, w, r0, r1, y, ldy); break;
    case WeightType::kF8E4M3: GemvT<WeightType::kF8E4M3>(x, m, ldx, w, r0, r1, y, ldy); break;
  }
}

void DequantAvx2(const WeightMatrix& w, int64_t row0, int64_t n, float* out) {
  switch (w.type) {
    case WeightType::kF32: DequantT<WeightType::kF32>(w, row0, n, out); break;
    case WeightType::kBF16: DequantT<WeightType::kBF16>(w, row0, n, out); break;
    case WeightType::kF16: DequantT<WeightType::kF16>(w, row0, n, out); break;
    case WeightType::kF8E4M3: DequantT<WeightType::kF8E4M3>(w, row0, n, out); break;
  }
}

}  // namespace dsv3::kernels::cpu
