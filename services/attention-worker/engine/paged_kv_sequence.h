// PagedKvSequence: the model's view (KvSequence) of one sequence's blocks in the BlockPool.
// Position p of a layer lives in block table[p / block_size] at row p % block_size, so
// every block is one contiguous run for the attention. The KvCacheManager reserves the
// blocks before a step; Prepare only checks that it did.
#pragma once

#include <vector>

#include "common/model/kv_sequence.h"
#include "services/attention-worker/kv_cache/block_pool.h"

namespace dsv3 {

class PagedKvSequence final : public KvSequence {
 public:
  PagedKvSequence(BlockPool& pool, const std::vector<BlockId>& table, int64_t length)
      : pool_(pool), table_(table), length_(length) {}
  int64_t latent_dim() const override { return pool_.latent_dim(); }
  int64_t length() const override { return length_; }
  Status Prepare(int64_t new_length) override {
    const int64_t capacity = static_cast<int64_t>(table_.size()) * pool_.block_size();
    if (new_length > capacity) {
      return Internal("kv-cache", StrCat("step needs ", new_length, " positions but only ", capacity, " are reserved"));
    }
    return absl::OkStatus();
  }
  float* Run(int64_t layer, int64_t pos, int64_t* contiguous) override {
    const int64_t bs = pool_.block_size();
    *contiguous = bs - pos % bs;
    return pool_.Data(table_[static_cast<size_t>(pos / bs)], layer) + (pos % bs) * pool_.latent_dim();
  }
  void Commit(int64_t new_length) override { length_ = new_length; }

 private:
  BlockPool& pool_;
  const std::vector<BlockId>& table_;
  int64_t length_;
};

}  // namespace dsv3
