// Encoding of one MoE layer's routed work between the attention side and an expert
// worker (the ExpertBatch / ExpertResult messages of proto/dsv3/expert.proto), and the
// checks an expert worker applies before touching a byte of it.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "proto/dsv3/expert.pb.h"

namespace dsv3 {

namespace expert_pb = ::dsv3::expert::v1;

enum class WireDType { kF32, kBF16 };

// Largest batch one message may carry; bigger work is split into several batches.
inline constexpr int64_t kMaxWireMessageBytes = 64ll << 20;

size_t WireDTypeSize(WireDType d);
expert_pb::WireDType ToProto(WireDType d);

// Appends `n` floats to `out` in the wire dtype (BF16: round to nearest even).
void EncodeFloats(const float* x, int64_t n, WireDType d, std::string* out);
// Decodes `n` floats; the caller has checked the byte size.
void DecodeFloats(const std::string& bytes, int64_t n, expert_pb::WireDType d, float* out);

// A validated batch, decoded to float32, ready for ComputeRoutedExperts.
struct DecodedBatch {
  int64_t layer = 0;
  int64_t tokens = 0;
  int64_t slots = 0;
  std::vector<float> x;        // [tokens, hidden]
  std::vector<int32_t> ids;    // [tokens, slots]
  std::vector<float> weights;  // [tokens, slots]
};

struct WireLimits {
  int64_t hidden_size = 0;
  int64_t n_routed_experts = 0;
  int64_t num_layers = 0;
  int64_t max_tokens = 1 << 20;
  std::vector<bool> moe_layer;  // [num_layers]
};

// Every size, dtype, layer and expert id checked; errors are InvalidArgument naming the field.
StatusOr<DecodedBatch> DecodeExpertBatch(const expert_pb::ExpertBatch& b, const WireLimits& limits);

}  // namespace dsv3
