// Element types found in DeepSeek checkpoints, with their safetensors names.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/status.h"

namespace dsv3 {

enum class DType : uint8_t { kF32, kF16, kBF16, kF8E4M3, kI64, kI32, kU8 };

constexpr size_t DTypeSize(DType t) {
  switch (t) {
    case DType::kF32: return 4;
    case DType::kF16: return 2;
    case DType::kBF16: return 2;
    case DType::kF8E4M3: return 1;
    case DType::kI64: return 8;
    case DType::kI32: return 4;
    case DType::kU8: return 1;
  }
  return 0;
}

std::string_view DTypeName(DType t);
StatusOr<DType> ParseDType(std::string_view name);

}  // namespace dsv3
