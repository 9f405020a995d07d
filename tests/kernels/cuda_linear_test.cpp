// CUDA GEMV against the CPU reference backend, every weight type. Skips, saying why, on
// machines without a usable CUDA device (the build machine has nvcc but no GPU).
#include <gtest/gtest.h>
#include <cuda_runtime.h>

#include <cmath>
#include <random>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_linear.h"

namespace dsv3::kernels {
namespace {

template <typename T>
T* ToDevice(const std::vector<T>& v) {
  T* p = nullptr;
  cudaMalloc(&p, v.size() * sizeof(T));
  cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice);
  return p;
}

TEST(CudaLinear, MatchesCpuBackendForEveryWeightType) {
  std::string why;
  if (!cuda::DeviceAvailable(&why)) GTEST_SKIP() << "no usable CUDA device: " << why;
  auto cpu = MakeCpuBackend({});
  std::mt19937 rng(3);
  const int64_t rows = 300, cols = 260, m = 5;
  std::vector<float> x(m * cols);
  for (auto& v : x) v = std::normal_distribution<float>(0, 1)(rng);
  for (WeightType t : {WeightType::kF32, WeightType::kBF16, WeightType::kF8E4M3}) {
    const int64_t esz = t == WeightType::kF32 ? 4 : t == WeightType::kF8E4M3 ? 1 : 2;
    std::vector<uint8_t> bytes(rows * cols * esz);
    for (auto& b : bytes) b = static_cast<uint8_t>(rng() % 0x70);
    std::vector<float> scales(((rows + 127) / 128) * ((cols + 127) / 128), 0.01f);
    WeightMatrix w{t, rows, cols, bytes.data(), t == WeightType::kF8E4M3 ? scales.data() : nullptr, 128, 128};
    std::vector<float> ref(m * rows), got(m * rows);
    cpu->Linear(x.data(), m, w, ref.data());
    WeightMatrix dw = w;
    dw.data = ToDevice(bytes);
    dw.scale_inv = t == WeightType::kF8E4M3 ? ToDevice(scales) : nullptr;
    float* dx = ToDevice(x);
    float* dy = nullptr;
    cudaMalloc(&dy, got.size() * sizeof(float));
    std::string err;
    ASSERT_TRUE(cuda::Linear(dx, m, dw, dy, &err)) << err;
    cudaMemcpy(got.data(), dy, got.size() * sizeof(float), cudaMemcpyDeviceToHost);
    for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], ref[i], 1e-4 * (1 + std::fabs(ref[i]))) << i;
    cudaFree(dy);
    cudaFree(dx);
    cudaFree(const_cast<void*>(dw.data));
    if (dw.scale_inv) cudaFree(const_cast<float*>(dw.scale_inv));
  }
}

}  // namespace
}  // namespace dsv3::kernels
