// BlockPool: the paged MLA latent cache's storage and bookkeeping. A block holds
// `block_size` token positions of every layer (kv_lora_rank + qk_rope_head_dim floats per
// position and layer). Blocks are reference counted; a full block can carry a content hash
// (prefix caching): when its last user frees it, it stays cached and evictable (LRU) until
// its space is needed.
//
// Ownership: the KvCacheManager is the only caller; nothing here is thread-safe (the
// engine thread owns the cache).
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <unordered_map>
#include <vector>

namespace dsv3 {

using BlockId = int32_t;

struct BlockPoolStats {
  int64_t num_blocks = 0;
  int64_t free_blocks = 0;     // unused or evictable
  int64_t cached_blocks = 0;   // hashed blocks (in use or evictable)
  uint64_t evictions = 0;
};

class BlockPool {
 public:
  BlockPool(int64_t num_blocks, int64_t block_size, int64_t layers, int64_t latent_dim);

  int64_t block_size() const { return block_size_; }
  int64_t num_blocks() const { return static_cast<int64_t>(ref_.size()); }
  int64_t num_free() const { return static_cast<int64_t>(free_.size() + evictable_.size()); }

  // Takes n blocks (evicting cached ones, least recently freed first); nothing is taken
  // unless all n are available.
  std::optional<std::vector<BlockId>> Allocate(int64_t n);
  // A cached full block with this content, now referenced once more (or nullopt).
  std::optional<BlockId> Lookup(uint64_t hash, const std::vector<int64_t>& tokens);
  // Marks a full block's content (its tokens and chained hash) so later prompts can share it.
  void Publish(BlockId b, uint64_t hash, std::vector<int64_t> tokens);
  void Ref(BlockId b) { ++ref_[b]; }
  // Drops one reference; unreferenced blocks become free (or evictable when hashed).
  void Release(BlockId b);

  float* Data(BlockId b, int64_t layer) { return data_.data() + (b * layers_ + layer) * block_size_ * latent_dim_; }
  // A block's values for every layer are contiguous: [layers][block_size][latent_dim].
  float* BlockData(BlockId b) { return Data(b, 0); }
  int64_t block_floats() const { return layers_ * block_size_ * latent_dim_; }
  int64_t layers() const { return layers_; }
  int64_t latent_dim() const { return latent_dim_; }
  int32_t ref_count(BlockId b) const { return ref_[b]; }
  BlockPoolStats stats() const;

 private:
  struct Content {
    uint64_t hash;
    std::vector<int64_t> tokens;
  };
  void Forget(BlockId b);

  int64_t block_size_, layers_, latent_dim_;
  std::vector<float> data_;
  std::vector<int32_t> ref_;
  std::vector<std::optional<Content>> content_;
  std::vector<BlockId> free_;                        // never hashed or forgotten
  std::list<BlockId> evictable_;                     // hashed, unreferenced; front = oldest
  std::vector<std::list<BlockId>::iterator> lru_pos_;
  std::vector<bool> in_lru_;
  std::unordered_multimap<uint64_t, BlockId> by_hash_;
  uint64_t evictions_ = 0;
};

// Chained content hash of one full block: depends on every token before it.
uint64_t HashBlock(uint64_t parent, const int64_t* tokens, int64_t n);

}  // namespace dsv3
