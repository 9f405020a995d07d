// KvCacheManager: per-sequence block tables over a BlockPool, with prefix caching.
//
// Life of a sequence: Start() finds the longest cached prefix of its prompt (whole blocks,
// always leaving at least one token to compute, so the step that samples has logits) and
// references those blocks; Reserve() before each step makes room for the step's new
// positions (all or nothing: a false return means "preempt someone", never a crash);
// Commit() after the step records the computed tokens and publishes blocks that became
// full; Free() returns everything at once (finish, abort, preemption).
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "services/attention-worker/kv_cache/block_pool.h"

namespace dsv3 {

struct PrefixCacheStats {
  uint64_t queried_tokens = 0;
  uint64_t hit_tokens = 0;
};

class KvCacheManager {
 public:
  explicit KvCacheManager(BlockPool& pool) : pool_(pool) {}

  // Returns the number of prompt tokens whose KV is already cached (a multiple of the
  // block size, < prompt size). Fails if `seq` exists.
  StatusOr<int64_t> Start(uint64_t seq, const std::vector<int64_t>& prompt);
  // Room for `new_positions` more positions; false when the pool cannot supply the blocks.
  StatusOr<bool> Reserve(uint64_t seq, int64_t new_positions);
  // `tokens` were computed at the next positions (after those already committed).
  Status Commit(uint64_t seq, const int64_t* tokens, int64_t n);
  Status Free(uint64_t seq);
  // A new sequence `child` with the parent's committed tokens: full blocks are shared
  // (read-only, referenced), the partial last block is copied. false: no block for the copy.
  StatusOr<bool> Fork(uint64_t parent, uint64_t child);
  int64_t num_tokens(uint64_t seq) const;

  StatusOr<const std::vector<BlockId>*> BlockTable(uint64_t seq) const;
  int64_t num_sequences() const { return static_cast<int64_t>(seqs_.size()); }
  const PrefixCacheStats& prefix_stats() const { return prefix_; }

 private:
  struct Seq {
    std::vector<BlockId> blocks;
    std::vector<int64_t> tokens;  // committed tokens (one per computed position)
    int64_t reserved = 0;         // positions the blocks can hold
    int64_t published = 0;        // leading full blocks already hashed
    uint64_t last_hash = 0;       // chained hash of the last published block
  };
  Status NotFound(uint64_t seq) const;

  BlockPool& pool_;
  std::unordered_map<uint64_t, Seq> seqs_;
  PrefixCacheStats prefix_;
};

}  // namespace dsv3
