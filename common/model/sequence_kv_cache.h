// SequenceKvCache: one sequence's compressed MLA cache, contiguous per layer (the offline
// generator, benchmarks and tests). The serving engine uses the paged block pool of the
// attention worker instead; both implement KvSequence.
#pragma once

#include <cstdint>
#include <vector>

#include "common/model/kv_sequence.h"

namespace dsv3 {

class SequenceKvCache final : public KvSequence {
 public:
  SequenceKvCache(int64_t layers, int64_t latent_dim) : latent_dim_(latent_dim), layers_(layers) {}
  int64_t latent_dim() const override { return latent_dim_; }
  int64_t length() const override { return length_; }
  // Benchmarks pretend a context exists without computing it.
  void set_length(int64_t n) { length_ = n; }
  Status Prepare(int64_t positions) override {
    Reserve(positions);
    return absl::OkStatus();
  }
  float* Run(int64_t layer, int64_t pos, int64_t* contiguous) override {
    *contiguous = capacity() - pos;
    return layers_[layer].data() + pos * latent_dim_;
  }
  void Commit(int64_t new_length) override { length_ = new_length; }

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
  int64_t capacity() const { return layers_.empty() ? 0 : static_cast<int64_t>(layers_[0].size()) / latent_dim_; }
  int64_t latent_dim_;
  int64_t length_ = 0;
  std::vector<std::vector<float>> layers_;
};

}  // namespace dsv3
