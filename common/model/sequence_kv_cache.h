// SequenceKvCache: one sequence's compressed MLA cache, contiguous per layer. Each
// position holds kv_lora_rank normalized latent values followed by qk_rope_head_dim
// rotated k_pe values (latent_dim floats), i.e. what MLA needs and nothing more. The
// paged, shared block pool of the serving engine replaces this (attention-worker issue).
#pragma once

#include <cstdint>
#include <vector>

namespace dsv3 {

class SequenceKvCache {
 public:
  SequenceKvCache(int64_t layers, int64_t latent_dim) : latent_dim_(latent_dim), layers_(layers) {}
  int64_t latent_dim() const { return latent_dim_; }
  // Positions [0, length) are valid in every layer after a completed forward.
  int64_t length() const { return length_; }
  void set_length(int64_t n) { length_ = n; }
  // Grows every layer to hold `positions` positions.
  void Reserve(int64_t positions) {
    for (auto& l : layers_) {
      if (static_cast<int64_t>(l.size()) < positions * latent_dim_) l.resize(static_cast<size_t>(positions * latent_dim_));
    }
  }
  float* layer(int64_t l) { return layers_[l].data(); }
  const float* layer(int64_t l) const { return layers_[l].data(); }
  int64_t bytes() const {
    int64_t b = 0;
    for (const auto& l : layers_) b += static_cast<int64_t>(l.size() * sizeof(float));
    return b;
  }

 private:
  int64_t latent_dim_;
  int64_t length_ = 0;
  std::vector<std::vector<float>> layers_;
};

}  // namespace dsv3
