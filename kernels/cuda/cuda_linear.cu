#include "kernels/cuda/cuda_linear.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace dsv3::kernels::cuda {
namespace {

constexpr int kMaxM = 16;
constexpr int kWarps = 4;  // rows per block, one warp per row

__device__ __forceinline__ float Bf16(uint16_t v) { return __uint_as_float(static_cast<uint32_t>(v) << 16); }

__device__ __forceinline__ float E4m3(uint8_t v) {
  const int exp = (v >> 3) & 0xf, man = v & 7;
  float f = exp == 0 ? ldexpf(static_cast<float>(man), -9) : ldexpf(static_cast<float>(8 + man), exp - 10);
  if (exp == 0xf && man == 7) f = __int_as_float(0x7fc00000);
  return (v & 0x80) ? -f : f;
}

__device__ __forceinline__ float Load(const WeightMatrix& w, int64_t r, int64_t c) {
  const int64_t i = r * w.cols + c;
  switch (w.type) {
    case WeightType::kF32: return static_cast<const float*>(w.data)[i];
    case WeightType::kBF16: return Bf16(static_cast<const uint16_t*>(w.data)[i]);
    case WeightType::kF16: return __half2float(reinterpret_cast<const __half*>(w.data)[i]);
    case WeightType::kF8E4M3:
      return E4m3(static_cast<const uint8_t*>(w.data)[i]) *
             w.scale_inv[((r + w.scale_row0) / w.block_rows) * w.scale_cols() + c / w.block_cols];
  }
  return 0.f;
}

// One warp per weight row; each lane strides over columns, then a warp reduction.
__global__ void GemvKernel(const float* __restrict__ x, int m, WeightMatrix w, float* __restrict__ y) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  if (r >= w.rows) return;
  float acc[kMaxM];
  for (int i = 0; i < kMaxM; ++i) acc[i] = 0.f;
  for (int64_t c = lane; c < w.cols; c += 32) {
    const float wv = Load(w, r, c);
    for (int i = 0; i < m; ++i) acc[i] = fmaf(wv, x[i * w.cols + c], acc[i]);
  }
  for (int i = 0; i < m; ++i) {
    float v = acc[i];
    for (int off = 16; off > 0; off /= 2) v += __shfl_down_sync(0xffffffffu, v, off);
    if (lane == 0) y[i * w.rows + r] = v;
  }
}

}  // namespace

bool DeviceAvailable(std::string* why) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (why) *why = cudaGetErrorString(e);
    return false;
  }
  if (n == 0) {
    if (why) *why = "no CUDA device";
    return false;
  }
  return true;
}

bool Linear(const float* x, int64_t m, const WeightMatrix& w, float* y, std::string* error) {
  for (int64_t m0 = 0; m0 < m; m0 += kMaxM) {
    const int mm = static_cast<int>(m - m0 < kMaxM ? m - m0 : kMaxM);
    const unsigned blocks = static_cast<unsigned>((w.rows + kWarps - 1) / kWarps);
    GemvKernel<<<blocks, kWarps * 32>>>(x + m0 * w.cols, mm, w, y + m0 * w.rows);
  }
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) e = cudaDeviceSynchronize();
  if (e != cudaSuccess) {
    if (error) *error = cudaGetErrorString(e);
    return false;
  }
  return true;
}

}  // namespace dsv3::kernels::cuda
