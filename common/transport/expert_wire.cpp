#include "common/transport/expert_wire.h"

#include "kernels/number_formats.h"

#include <cmath>
#include <cstring>

namespace dsv3 {
namespace {

constexpr std::string_view kSub = "expert-wire";

}  // namespace

size_t WireDTypeSize(WireDType d) { return d == WireDType::kF32 ? 4 : 2; }

expert_pb::WireDType ToProto(WireDType d) {
  return d == WireDType::kF32 ? expert_pb::WIRE_F32 : expert_pb::WIRE_BF16;
}

void EncodeFloats(const float* x, int64_t n, WireDType d, std::string* out) {
  const size_t off = out->size();
  if (d == WireDType::kF32) {
    out->resize(off + static_cast<size_t>(n) * 4);
    std::memcpy(out->data() + off, x, static_cast<size_t>(n) * 4);
    return;
  }
  out->resize(off + static_cast<size_t>(n) * 2);
  auto* p = reinterpret_cast<uint16_t*>(out->data() + off);
  for (int64_t i = 0; i < n; ++i) p[i] = kernels::F32ToBf16(x[i]);
}

void DecodeFloats(const std::string& bytes, int64_t n, expert_pb::WireDType d, float* out) {
  if (d == expert_pb::WIRE_F32) {
    std::memcpy(out, bytes.data(), static_cast<size_t>(n) * 4);
    return;
  }
  const auto* p = reinterpret_cast<const uint16_t*>(bytes.data());
  for (int64_t i = 0; i < n; ++i) out[i] = kernels::Bf16ToF32(p[i]);
}

StatusOr<DecodedBatch> DecodeExpertBatch(const expert_pb::ExpertBatch& b, const WireLimits& lim) {
  if (b.dtype() != expert_pb::WIRE_F32 && b.dtype() != expert_pb::WIRE_BF16) {
    return InvalidArgument(kSub, StrCat("unknown activation dtype ", static_cast<int>(b.dtype())));
  }
  if (b.hidden_size() != lim.hidden_size) {
    return InvalidArgument(kSub, StrCat("hidden_size ", b.hidden_size(), " does not match the model's ", lim.hidden_size));
  }
  if (b.layer() < 0 || b.layer() >= lim.num_layers || !lim.moe_layer[b.layer()]) {
    return InvalidArgument(kSub, StrCat("layer ", b.layer(), " is not an MoE layer of this model"));
  }
  if (b.num_tokens() < 0 || b.num_tokens() > lim.max_tokens) {
    return InvalidArgument(kSub, StrCat("num_tokens ", b.num_tokens(), " outside [0, ", lim.max_tokens, "]"));
  }
  if (b.slots() < 0 || b.slots() > lim.n_routed_experts) {
    return InvalidArgument(kSub, StrCat("slots ", b.slots(), " outside [0, ", lim.n_routed_experts, "]"));
  }
  const int64_t T = b.num_tokens(), S = b.slots(), H = lim.hidden_size;
  const size_t esz = b.dtype() == expert_pb::WIRE_F32 ? 4 : 2;
  if (b.activations().size() != static_cast<size_t>(T * H) * esz) {
    return InvalidArgument(kSub, StrCat("activations hold ", b.activations().size(), " bytes, expected ",
                                        static_cast<size_t>(T * H) * esz, " (num_tokens x hidden_size x dtype)"));
  }
  if (b.expert_ids().size() != static_cast<size_t>(T * S) * 4) {
    return InvalidArgument(kSub, StrCat("expert_ids hold ", b.expert_ids().size(), " bytes, expected ", T * S * 4));
  }
  if (b.weights().size() != static_cast<size_t>(T * S) * 4) {
    return InvalidArgument(kSub, StrCat("weights hold ", b.weights().size(), " bytes, expected ", T * S * 4));
  }
  DecodedBatch d;
  d.layer = b.layer();
  d.tokens = T;
  d.slots = S;
  d.x.resize(static_cast<size_t>(T * H));
  DecodeFloats(b.activations(), T * H, b.dtype(), d.x.data());
  d.ids.resize(static_cast<size_t>(T * S));
  std::memcpy(d.ids.data(), b.expert_ids().data(), d.ids.size() * 4);
  d.weights.resize(static_cast<size_t>(T * S));
  std::memcpy(d.weights.data(), b.weights().data(), d.weights.size() * 4);
  for (int32_t e : d.ids) {
    if (e < -1 || e >= lim.n_routed_experts) {
      return InvalidArgument(kSub, StrCat("expert id ", e, " outside [0, ", lim.n_routed_experts, ")"));
    }
  }
  for (float w : d.weights) {
    if (!std::isfinite(w)) return InvalidArgument(kSub, "non-finite routing weight");
  }
  return d;
}

}  // namespace dsv3
