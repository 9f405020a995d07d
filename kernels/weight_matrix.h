// Weight views handed to kernels: raw pointers into the mmap'ed checkpoint, never copies.
#pragma once

#include <cstdint>

// The structs are shared with CUDA device code.
#if defined(__CUDACC__)
#define DSV3_HOST_DEVICE __host__ __device__
#else
#define DSV3_HOST_DEVICE
#endif

namespace dsv3::kernels {

enum class WeightType : uint8_t { kF32, kBF16, kF16, kF8E4M3 };

// A linear layer's weight, row-major [rows = out_features, cols = in_features]; y = W x.
// FP8: data holds e4m3 codes and scale_inv the float32 block scales
// [ceil(rows / block_rows), ceil(cols / block_cols)]; W[i][j] = e4m3(code) * scale_inv[..]
// computed in float32, exactly as the official weight_dequant does.
struct WeightMatrix {
  WeightType type = WeightType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  const void* data = nullptr;     // [rows, cols]
  const float* scale_inv = nullptr;  // FP8 only: [scale_rows, scale_cols]
  int64_t block_rows = 128;
  int64_t block_cols = 128;
  int64_t scale_row0 = 0;  // FP8 row views: index of this view's row 0 in the scale grid

  DSV3_HOST_DEVICE int64_t scale_cols() const { return (cols + block_cols - 1) / block_cols; }
  // Rows [row0, row0 + n) as a WeightMatrix of its own (same scale grid, offset rows).
  WeightMatrix RowSlice(int64_t row0, int64_t n) const;
  DSV3_HOST_DEVICE int64_t bytes_per_element() const { return type == WeightType::kF32 ? 4 : type == WeightType::kF8E4M3 ? 1 : 2; }
};

// A 1-D weight (norm gains): BF16 or F32.
struct WeightVector {
  WeightType type = WeightType::kF32;
  int64_t size = 0;
  const void* data = nullptr;
};

inline WeightMatrix WeightMatrix::RowSlice(int64_t row0, int64_t n) const {
  WeightMatrix s = *this;
  s.rows = n;
  s.data = static_cast<const uint8_t*>(data) + row0 * cols * bytes_per_element();
  s.scale_row0 = scale_row0 + row0;
  return s;
}

}  // namespace dsv3::kernels
