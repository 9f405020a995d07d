#include "services/attention-worker/kv_cache/kv_cache_manager.h"

#include <algorithm>

namespace dsv3 {

Status KvCacheManager::NotFound(uint64_t seq) const {
  return dsv3::NotFound("kv-cache", StrCat("unknown sequence ", seq));
}

StatusOr<int64_t> KvCacheManager::Start(uint64_t seq, const std::vector<int64_t>& prompt) {
  if (seqs_.count(seq)) return InvalidArgument("kv-cache", StrCat("sequence ", seq, " already exists"));
  Seq s;
  const int64_t bs = pool_.block_size();
  // Whole blocks only, and never the whole prompt: its last token must be computed.
  const int64_t max_blocks = prompt.empty() ? 0 : (static_cast<int64_t>(prompt.size()) - 1) / bs;
  uint64_t h = 0;
  for (int64_t i = 0; i < max_blocks; ++i) {
    const int64_t* t = prompt.data() + i * bs;
    const uint64_t next = HashBlock(h, t, bs);
    auto b = pool_.Lookup(next, std::vector<int64_t>(t, t + bs));
    if (!b) break;
    s.blocks.push_back(*b);
    h = next;
  }
  const int64_t cached = static_cast<int64_t>(s.blocks.size()) * bs;
  s.tokens.assign(prompt.begin(), prompt.begin() + cached);
  s.reserved = cached;
  s.published = static_cast<int64_t>(s.blocks.size());
  s.last_hash = h;
  prefix_.queried_tokens += prompt.size();
  prefix_.hit_tokens += static_cast<uint64_t>(cached);
  seqs_.emplace(seq, std::move(s));
  return cached;
}

StatusOr<bool> KvCacheManager::Reserve(uint64_t seq, int64_t new_positions) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return NotFound(seq);
  Seq& s = it->second;
  const int64_t need_positions = static_cast<int64_t>(s.tokens.size()) + new_positions;
  if (need_positions <= s.reserved) return true;
  const int64_t bs = pool_.block_size();
  const int64_t need_blocks = (need_positions + bs - 1) / bs - static_cast<int64_t>(s.blocks.size());
  auto got = pool_.Allocate(need_blocks);
  if (!got) return false;
  s.blocks.insert(s.blocks.end(), got->begin(), got->end());
  s.reserved = static_cast<int64_t>(s.blocks.size()) * bs;
  return true;
}

Status KvCacheManager::Commit(uint64_t seq, const int64_t* tokens, int64_t n) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return NotFound(seq);
  Seq& s = it->second;
  if (static_cast<int64_t>(s.tokens.size()) + n > s.reserved) {
    return InvalidArgument("kv-cache", StrCat("sequence ", seq, ": commit of ", n, " positions beyond its reservation"));
  }
  s.tokens.insert(s.tokens.end(), tokens, tokens + n);
  const int64_t bs = pool_.block_size();
  const int64_t full = static_cast<int64_t>(s.tokens.size()) / bs;
  for (; s.published < full; ++s.published) {
    const int64_t* t = s.tokens.data() + s.published * bs;
    s.last_hash = HashBlock(s.last_hash, t, bs);
    pool_.Publish(s.blocks[s.published], s.last_hash, std::vector<int64_t>(t, t + bs));
  }
  return absl::OkStatus();
}

Status KvCacheManager::Free(uint64_t seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return NotFound(seq);
  for (BlockId b : it->second.blocks) pool_.Release(b);
  seqs_.erase(it);
  return absl::OkStatus();
}

StatusOr<bool> KvCacheManager::Fork(uint64_t parent, uint64_t child) {
  auto it = seqs_.find(parent);
  if (it == seqs_.end()) return NotFound(parent);
  if (seqs_.count(child)) return InvalidArgument("kv-cache", StrCat("sequence ", child, " already exists"));
  const Seq& p = it->second;
  const int64_t bs = pool_.block_size();
  const int64_t n = static_cast<int64_t>(p.tokens.size());
  const int64_t full = n / bs, partial = n % bs;
  Seq c;
  c.tokens = p.tokens;
  c.published = p.published;
  c.last_hash = p.last_hash;
  if (partial > 0) {
    auto got = pool_.Allocate(1);
    if (!got) return false;
    const BlockId src = p.blocks[full], dst = (*got)[0];
    // Only the committed positions of each layer matter; copying the whole block is simpler.
    std::copy_n(pool_.BlockData(src), pool_.block_floats(), pool_.BlockData(dst));
    c.blocks.assign(p.blocks.begin(), p.blocks.begin() + full);
    c.blocks.push_back(dst);
  } else {
    c.blocks.assign(p.blocks.begin(), p.blocks.begin() + full);
  }
  for (int64_t i = 0; i < full; ++i) pool_.Ref(c.blocks[i]);
  c.reserved = static_cast<int64_t>(c.blocks.size()) * bs;
  seqs_.emplace(child, std::move(c));
  return true;
}

int64_t KvCacheManager::num_tokens(uint64_t seq) const {
  auto it = seqs_.find(seq);
  return it == seqs_.end() ? 0 : static_cast<int64_t>(it->second.tokens.size());
}

StatusOr<const std::vector<BlockId>*> KvCacheManager::BlockTable(uint64_t seq) const {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return NotFound(seq);
  return &it->second.blocks;
}

}  // namespace dsv3
