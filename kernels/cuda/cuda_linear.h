// CUDA kernels behind the same WeightMatrix contract as the CPU backend. Today: the
// decode-shape linear (GEMV, m <= 16) for F32/BF16/F16/FP8 weights with float32
// activations and accumulation, checked against the CPU backend on GPU machines
// (tests/kernels/cuda_linear_test). The full CUDA Backend builds on these.
#pragma once

#include <cstdint>
#include <string>

#include "kernels/weight_matrix.h"

namespace dsv3::kernels::cuda {

// True when a CUDA device is usable; otherwise *why says what failed (driver, no device).
bool DeviceAvailable(std::string* why);

// y[m, w.rows] = x[m, w.cols] * W^T; all pointers are device pointers (w.data and
// w.scale_inv too). Returns false and sets *error on a CUDA error.
bool Linear(const float* x, int64_t m, const WeightMatrix& w, float* y, std::string* error);

}  // namespace dsv3::kernels::cuda
