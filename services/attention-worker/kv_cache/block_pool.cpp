#include "services/attention-worker/kv_cache/block_pool.h"

namespace dsv3 {

uint64_t HashBlock(uint64_t parent, const int64_t* tokens, int64_t n) {
  // FNV-1a over the parent hash and the token ids; collisions are caught by Lookup, which
  // compares the stored tokens.
  uint64_t h = 1469598103934665603ull ^ parent;
  auto mix = [&](uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xff;
      h *= 1099511628211ull;
    }
  };
  mix(parent);
  for (int64_t i = 0; i < n; ++i) mix(static_cast<uint64_t>(tokens[i]));
  return h;
}

BlockPool::BlockPool(int64_t num_blocks, int64_t block_size, int64_t layers, int64_t latent_dim)
    : block_size_(block_size),
      layers_(layers),
      latent_dim_(latent_dim),
      data_(static_cast<size_t>(num_blocks * layers * block_size * latent_dim)),
      ref_(static_cast<size_t>(num_blocks), 0),
      content_(static_cast<size_t>(num_blocks)),
      lru_pos_(static_cast<size_t>(num_blocks)),
      in_lru_(static_cast<size_t>(num_blocks), false) {
  for (BlockId b = static_cast<BlockId>(num_blocks) - 1; b >= 0; --b) free_.push_back(b);
}

void BlockPool::Forget(BlockId b) {
  if (!content_[b]) return;
  auto range = by_hash_.equal_range(content_[b]->hash);
  for (auto it = range.first; it != range.second; ++it) {
    if (it->second == b) {
      by_hash_.erase(it);
      break;
    }
  }
  content_[b].reset();
}

std::optional<std::vector<BlockId>> BlockPool::Allocate(int64_t n) {
  if (n > num_free()) return std::nullopt;
  std::vector<BlockId> out;
  out.reserve(static_cast<size_t>(n));
  while (static_cast<int64_t>(out.size()) < n) {
    BlockId b;
    if (!free_.empty()) {
      b = free_.back();
      free_.pop_back();
    } else {
      b = evictable_.front();
      evictable_.pop_front();
      in_lru_[b] = false;
      Forget(b);
      ++evictions_;
    }
    ref_[b] = 1;
    out.push_back(b);
  }
  return out;
}

std::optional<BlockId> BlockPool::Lookup(uint64_t hash, const std::vector<int64_t>& tokens) {
  auto range = by_hash_.equal_range(hash);
  for (auto it = range.first; it != range.second; ++it) {
    const BlockId b = it->second;
    if (content_[b]->tokens != tokens) continue;
    if (in_lru_[b]) {
      evictable_.erase(lru_pos_[b]);
      in_lru_[b] = false;
    }
    ++ref_[b];
    return b;
  }
  return std::nullopt;
}

void BlockPool::Publish(BlockId b, uint64_t hash, std::vector<int64_t> tokens) {
  if (content_[b]) return;
  content_[b] = Content{hash, std::move(tokens)};
  by_hash_.emplace(hash, b);
}

void BlockPool::Release(BlockId b) {
  if (--ref_[b] > 0) return;
  if (content_[b]) {
    evictable_.push_back(b);
    lru_pos_[b] = std::prev(evictable_.end());
    in_lru_[b] = true;
  } else {
    free_.push_back(b);
  }
}

BlockPoolStats BlockPool::stats() const {
  BlockPoolStats s;
  s.num_blocks = num_blocks();
  s.free_blocks = num_free();
  s.cached_blocks = static_cast<int64_t>(by_hash_.size());
  s.evictions = evictions_;
  return s;
}

}  // namespace dsv3
