// AVX-512 (F/BW/VL + F16C) kernels: weights are widened to float32 in registers (BF16 by
// a shift, FP8 e4m3 through an exact f16 re-encoding) and multiplied in float32, so the
// results equal the scalar reference up to summation order.
#include <immintrin.h>

#include "kernels/cpu/linear_kernels.h"

namespace dsv3::kernels::cpu {
namespace {

template <WeightType T>
inline __m512 LoadW(const uint8_t* row, int64_t c, __mmask16 mask, bool masked, __m512 scale256) {
  if constexpr (T == WeightType::kF32) {
    const float* p = reinterpret_cast<const float*>(row) + c;
    return masked ? _mm512_maskz_loadu_ps(mask, p) : _mm512_loadu_ps(p);
  } else if constexpr (T == WeightType::kBF16) {
    const uint16_t* p = reinterpret_cast<const uint16_t*>(row) + c;
    __m256i v = masked ? _mm256_maskz_loadu_epi16(mask, p)
                       : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
  } else if constexpr (T == WeightType::kF16) {
    const uint16_t* p = reinterpret_cast<const uint16_t*>(row) + c;
    __m256i v = masked ? _mm256_maskz_loadu_epi16(mask, p)
                       : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm512_cvtph_ps(v);
  } else {
    // e4m3 -> f16 bits: magnitude << 7 lands exponent/mantissa in place (biases differ by
    // 8, i.e. a factor 2^-8, folded into scale256), subnormals map to f16 subnormals.
    const uint8_t* p = row + c;
    __m128i b = masked ? _mm_maskz_loadu_epi8(mask, p) : _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    __m256i h = _mm256_cvtepu8_epi16(b);
    __m256i mag = _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi16(0x7f)), 7);
    __m256i sgn = _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi16(0x80)), 8);
    return _mm512_mul_ps(_mm512_cvtph_ps(_mm256_or_si256(mag, sgn)), scale256);
  }
}

constexpr int64_t kPrefetch = 256;  // elements ahead (tuned with bench/)

// Horizontal sums of R accumulators in one fixed order, (lo256 + hi256), then pairwise
// within 128-bit lanes, then the two lanes: R = 1, 4 and 8 produce bit-identical sums for
// the same vector, so a row's result does not depend on which block shape computed it.
inline __m256 Halves(__m512 v) {
  return _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

template <int R>
inline void StoreSums(const __m512* acc, float* y) {
  if constexpr (R == 8) {
    const __m256 a = _mm256_hadd_ps(Halves(acc[0]), Halves(acc[1]));
    const __m256 b = _mm256_hadd_ps(Halves(acc[2]), Halves(acc[3]));
    const __m256 c = _mm256_hadd_ps(Halves(acc[4]), Halves(acc[5]));
    const __m256 d = _mm256_hadd_ps(Halves(acc[6]), Halves(acc[7]));
    const __m256 ab = _mm256_hadd_ps(a, b), cd = _mm256_hadd_ps(c, d);
    _mm256_storeu_ps(y, _mm256_add_ps(_mm256_permute2f128_ps(ab, cd, 0x20), _mm256_permute2f128_ps(ab, cd, 0x31)));
  } else if constexpr (R == 16) {
    StoreSums<8>(acc, y);
    StoreSums<8>(acc + 8, y + 8);
  } else if constexpr (R == 4) {
    const __m256 a = _mm256_hadd_ps(Halves(acc[0]), Halves(acc[1]));
    const __m256 b = _mm256_hadd_ps(Halves(acc[2]), Halves(acc[3]));
    const __m256 ab = _mm256_hadd_ps(a, b);
    _mm_storeu_ps(y, _mm_add_ps(_mm256_castps256_ps128(ab), _mm256_extractf128_ps(ab, 1)));
  } else {
    for (int j = 0; j < R; ++j) {
      const __m256 h = Halves(acc[j]);
      const __m256 q = _mm256_hadd_ps(_mm256_hadd_ps(h, h), _mm256_hadd_ps(h, h));
      y[j] = _mm_cvtss_f32(_mm_add_ss(_mm256_castps256_ps128(q), _mm256_extractf128_ps(q, 1)));
    }
  }
}

constexpr int64_t Esz(WeightType t) { return t == WeightType::kF32 ? 4 : t == WeightType::kF8E4M3 ? 1 : 2; }

// R weight rows x MT activation rows, full dot products over all columns.
// FP8 rows that share one row of block scales: 32 codes per step widened with 512-bit
// integer ops, and the column block's scale folded into the activations (w * (s * x)
// instead of (w * s) * x: the same float32 products up to rounding order) so the inner
// loop is convert + FMA.
template <int R, int MT>
inline void BlockFp8SharedScale(const float* x, int64_t ldx, const WeightMatrix& w, int64_t r, float* y, int64_t ldy) {
  const int64_t K = w.cols;
  const int64_t blk = w.block_cols;
  const uint8_t* rows[R];
  for (int j = 0; j < R; ++j) rows[j] = static_cast<const uint8_t*>(w.data) + (r + j) * K;
  const float* srow = w.scale_inv + ((r + w.scale_row0) / w.block_rows) * w.scale_cols();
  __m512 acc[MT][R];
  for (int mi = 0; mi < MT; ++mi)
    for (int j = 0; j < R; ++j) acc[mi][j] = _mm512_setzero_ps();
  const __m512i m7f = _mm512_set1_epi16(0x7f), m80 = _mm512_set1_epi16(0x80);
  for (int64_t cb = 0; cb < K; cb += blk) {
    const __m512 s256 = _mm512_set1_ps(srow[cb / blk] * 256.0f);
    const int64_t cend = cb + blk < K ? cb + blk : K;
    int64_t c = cb;
    for (; c + 32 <= cend; c += 32) {
      __m512 xs[MT][2];
      for (int mi = 0; mi < MT; ++mi) {
        xs[mi][0] = _mm512_mul_ps(_mm512_loadu_ps(x + mi * ldx + c), s256);
        xs[mi][1] = _mm512_mul_ps(_mm512_loadu_ps(x + mi * ldx + c + 16), s256);
      }
      for (int j = 0; j < R; ++j) {
        if constexpr (kPrefetch > 0) _mm_prefetch(reinterpret_cast<const char*>(rows[j] + c + kPrefetch), _MM_HINT_T0);
        const __m512i h = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[j] + c)));
        const __m512i f16 = _mm512_or_si512(_mm512_slli_epi16(_mm512_and_si512(h, m7f), 7),
                                            _mm512_slli_epi16(_mm512_and_si512(h, m80), 8));
        const __m512 w0 = _mm512_cvtph_ps(_mm512_castsi512_si256(f16));
        const __m512 w1 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(f16, 1));
        for (int mi = 0; mi < MT; ++mi) {
          acc[mi][j] = _mm512_fmadd_ps(w0, xs[mi][0], acc[mi][j]);
          acc[mi][j] = _mm512_fmadd_ps(w1, xs[mi][1], acc[mi][j]);
        }
      }
    }
    for (; c < cend; c += 16) {  // 16-wide remainder, masked at the end of the row
      const int64_t n = cend - c < 16 ? cend - c : 16;
      const __mmask16 mask = static_cast<__mmask16>((1u << n) - 1);
      __m512 xs[MT];
      for (int mi = 0; mi < MT; ++mi) xs[mi] = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, x + mi * ldx + c), s256);
      for (int j = 0; j < R; ++j) {
        const __m256i h = _mm256_cvtepu8_epi16(_mm_maskz_loadu_epi8(mask, rows[j] + c));
        const __m256i f16 = _mm256_or_si256(_mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi16(0x7f)), 7),
                                            _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi16(0x80)), 8));
        const __m512 wv = _mm512_cvtph_ps(f16);
        for (int mi = 0; mi < MT; ++mi) acc[mi][j] = _mm512_fmadd_ps(wv, xs[mi], acc[mi][j]);
      }
    }
  }
  for (int mi = 0; mi < MT; ++mi) StoreSums<R>(acc[mi], y + mi * ldy + r);
}

template <WeightType T, int R, int MT>
inline void BlockGeneric(const float* x, int64_t ldx, const WeightMatrix& w, int64_t r, float* y, int64_t ldy) {
  const int64_t K = w.cols;
  const int64_t kfull = K / 16 * 16;
  const int64_t rem = K - kfull;
  const __mmask16 tail = static_cast<__mmask16>((1u << rem) - 1);
  const uint8_t* rows[R];
  const float* srow[R];
  for (int j = 0; j < R; ++j) {
    rows[j] = static_cast<const uint8_t*>(w.data) + (r + j) * K * Esz(T);
    srow[j] = T == WeightType::kF8E4M3 ? w.scale_inv + ((r + j + w.scale_row0) / w.block_rows) * w.scale_cols() : nullptr;
  }
  __m512 acc[MT][R];
  for (int mi = 0; mi < MT; ++mi)
    for (int j = 0; j < R; ++j) acc[mi][j] = _mm512_setzero_ps();
  const int64_t blk = T == WeightType::kF8E4M3 ? w.block_cols : (K + 16);
  __m512 s256[R];
  for (int j = 0; j < R; ++j) s256[j] = _mm512_setzero_ps();
  for (int64_t cb = 0; cb < K; cb += blk) {
    if constexpr (T == WeightType::kF8E4M3) {
      for (int j = 0; j < R; ++j) s256[j] = _mm512_set1_ps(srow[j][cb / blk] * 256.0f);
    }
    const int64_t cend = cb + blk < kfull ? cb + blk : kfull;
    for (int64_t c = cb; c < cend; c += 16) {
      __m512 wv[R];
      // Software prefetch a few lines ahead on every row stream: with 4-8 concurrent
      // row streams per core the hardware prefetcher alone leaves bandwidth unused.
      if constexpr (kPrefetch > 0) {
        for (int j = 0; j < R; ++j) _mm_prefetch(reinterpret_cast<const char*>(rows[j] + (c + kPrefetch) * Esz(T)), _MM_HINT_T0);
      }
      for (int j = 0; j < R; ++j) wv[j] = LoadW<T>(rows[j], c, 0, false, s256[j]);
      for (int mi = 0; mi < MT; ++mi) {
        __m512 xv = _mm512_loadu_ps(x + mi * ldx + c);
        for (int j = 0; j < R; ++j) acc[mi][j] = _mm512_fmadd_ps(wv[j], xv, acc[mi][j]);
      }
    }
    if (rem != 0 && cb + blk >= K) {
      __m512 wv[R];
      for (int j = 0; j < R; ++j) wv[j] = LoadW<T>(rows[j], kfull, tail, true, s256[j]);
      for (int mi = 0; mi < MT; ++mi) {
        __m512 xv = _mm512_maskz_loadu_ps(tail, x + mi * ldx + kfull);
        for (int j = 0; j < R; ++j) acc[mi][j] = _mm512_fmadd_ps(wv[j], xv, acc[mi][j]);
      }
    }
  }
  for (int mi = 0; mi < MT; ++mi) StoreSums<R>(acc[mi], y + mi * ldy + r);
}

template <WeightType T, int R, int MT>
inline void Block(const float* x, int64_t ldx, const WeightMatrix& w, int64_t r, float* y, int64_t ldy) {
  if constexpr (T == WeightType::kF8E4M3) {
    if ((r + w.scale_row0) / w.block_rows == (r + R - 1 + w.scale_row0) / w.block_rows) {
      BlockFp8SharedScale<R, MT>(x, ldx, w, r, y, ldy);
      return;
    }
  }
  BlockGeneric<T, R, MT>(x, ldx, w, r, y, ldy);
}

// All activation rows against weight rows [r, r + R): the weight block comes from DRAM
// once and is reused from cache by every 4-row activation tile.
template <WeightType T, int R>
inline void AllTiles(const float* x, int64_t m, int64_t ldx, const WeightMatrix& w, int64_t r, float* y, int64_t ldy) {
  for (int64_t m0 = 0; m0 < m; m0 += 4) {
    const float* xm = x + m0 * ldx;
    float* ym = y + m0 * ldy;
    switch (m - m0 >= 4 ? 4 : m - m0) {
      case 4: Block<T, R, 4>(xm, ldx, w, r, ym, ldy); break;
      case 3: Block<T, R, 3>(xm, ldx, w, r, ym, ldy); break;
      case 2: Block<T, R, 2>(xm, ldx, w, r, ym, ldy); break;
      default: Block<T, R, 1>(xm, ldx, w, r, ym, ldy); break;
    }
  }
}

template <WeightType T>
void GemvT(const float* x, int64_t m, int64_t ldx, const WeightMatrix& w, int64_t r0, int64_t r1,
           float* y, int64_t ldy) {
  int64_t r = r0;
  if (m == 1) {
    for (; r + 16 <= r1; r += 16) Block<T, 16, 1>(x, ldx, w, r, y, ldy);
    for (; r + 8 <= r1; r += 8) Block<T, 8, 1>(x, ldx, w, r, y, ldy);
  }
  for (; r + 4 <= r1; r += 4) AllTiles<T, 4>(x, m, ldx, w, r, y, ldy);
  for (; r < r1; ++r) AllTiles<T, 1>(x, m, ldx, w, r, y, ldy);
}

template <WeightType T>
void DequantT(const WeightMatrix& w, int64_t row0, int64_t n, float* out) {
  const int64_t K = w.cols;
  const int64_t kfull = K / 16 * 16;
  const __mmask16 tail = static_cast<__mmask16>((1u << (K - kfull)) - 1);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = row0 + i;
    const uint8_t* row = static_cast<const uint8_t*>(w.data) + r * K * Esz(T);
    float* o = out + i * K;
    const float* srow = T == WeightType::kF8E4M3 ? w.scale_inv + ((r + w.scale_row0) / w.block_rows) * w.scale_cols() : nullptr;
    for (int64_t c = 0; c < K; c += 16) {
      __m512 s = T == WeightType::kF8E4M3 ? _mm512_set1_ps(srow[c / w.block_cols] * 256.0f) : _mm512_setzero_ps();
      if (c < kfull) {
        _mm512_storeu_ps(o + c, LoadW<T>(row, c, 0, false, s));
      } else {
        _mm512_mask_storeu_ps(o + c, tail, LoadW<T>(row, c, tail, true, s));
      }
    }
  }
}

}  // namespace

void GemvAvx512(const float* x, int64_t m, int64_t ldx, const WeightMatrix& w, int64_t r0, int64_t r1,
                float* y, int64_t ldy) {
  switch (w.type) {
    case WeightType::kF32: GemvT<WeightType::kF32>(x, m, ldx, w, r0, r1, y, ldy); break;
    case WeightType::kBF16: GemvT<WeightType::kBF16>(x, m, ldx, w, r0, r1, y, ldy); break;
    case WeightType::kF16: GemvT<WeightType::kF16>(x, m, ldx, w, r0, r1, y, ldy); break;
    case WeightType::kF8E4M3: GemvT<WeightType::kF8E4M3>(x, m, ldx, w, r0, r1, y, ldy); break;
  }
}

void DequantAvx512(const WeightMatrix& w, int64_t row0, int64_t n, float* out) {
  switch (w.type) {
    case WeightType::kF32: DequantT<WeightType::kF32>(w, row0, n, out); break;
    case WeightType::kBF16: DequantT<WeightType::kBF16>(w, row0, n, out); break;
    case WeightType::kF16: DequantT<WeightType::kF16>(w, row0, n, out); break;
    case WeightType::kF8E4M3: DequantT<WeightType::kF8E4M3>(w, row0, n, out); break;
  }
}

}  // namespace dsv3::kernels::cpu
