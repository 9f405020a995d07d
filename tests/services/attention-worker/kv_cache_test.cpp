// Paged latent KV cache: block accounting, all-or-nothing reservation, prefix caching
// with content verification, LRU eviction, immediate release on free.
#include <gtest/gtest.h>

#include <numeric>

#include "services/attention-worker/kv_cache/kv_cache_manager.h"

namespace dsv3 {
namespace {

std::vector<int64_t> Tokens(int64_t n, int64_t start = 100) {
  std::vector<int64_t> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), start);
  return t;
}

TEST(KvCache, ReserveCommitFreeReturnsEveryBlock) {
  BlockPool pool(10, 4, 2, 8);
  KvCacheManager m(pool);
  auto p = Tokens(10);
  ASSERT_EQ(*m.Start(1, p), 0);
  ASSERT_TRUE(*m.Reserve(1, 10));
  EXPECT_EQ((*m.BlockTable(1))->size(), 3u);  // ceil(10 / 4)
  EXPECT_EQ(pool.num_free(), 7);
  ASSERT_TRUE(m.Commit(1, p.data(), 10).ok());
  ASSERT_TRUE(*m.Reserve(1, 1));  // position 10 fits in block 3
  EXPECT_EQ(pool.num_free(), 7);
  ASSERT_TRUE(m.Free(1).ok());
  EXPECT_EQ(pool.num_free(), 10);  // free immediately (2 full blocks stay cached but evictable)
  EXPECT_EQ(pool.stats().cached_blocks, 2);
  EXPECT_FALSE(m.Free(1).ok());
  EXPECT_FALSE(m.Reserve(1, 1).ok());
}

TEST(KvCache, ExhaustionIsAllOrNothing) {
  BlockPool pool(4, 4, 1, 8);
  KvCacheManager m(pool);
  ASSERT_TRUE(m.Start(1, Tokens(8)).ok());
  ASSERT_TRUE(*m.Reserve(1, 8));
  ASSERT_TRUE(m.Start(2, Tokens(12, 500)).ok());
  EXPECT_FALSE(*m.Reserve(2, 12));  // needs 3 blocks, 2 left: nothing taken
  EXPECT_EQ(pool.num_free(), 2);
  ASSERT_TRUE(m.Free(1).ok());      // "preempt" sequence 1
  EXPECT_TRUE(*m.Reserve(2, 12));
  EXPECT_FALSE(m.Commit(2, Tokens(13).data(), 13).ok()) << "beyond the reservation";
}

TEST(KvCache, PrefixHitSharesBlocksAndLeavesTheLastTokenToCompute) {
  BlockPool pool(16, 4, 1, 8);
  KvCacheManager m(pool);
  auto sys = Tokens(12);  // 3 full blocks
  auto a = sys;
  a.push_back(7);
  ASSERT_EQ(*m.Start(1, a), 0);
  ASSERT_TRUE(*m.Reserve(1, 13));
  ASSERT_TRUE(m.Commit(1, a.data(), 13).ok());
  auto b = sys;
  b.push_back(9);
  b.push_back(10);
  EXPECT_EQ(*m.Start(2, b), 12);  // the shared system prompt
  const auto& ta = **m.BlockTable(1);
  const auto& tb = **m.BlockTable(2);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(ta[i], tb[i]);
  EXPECT_EQ(pool.ref_count(ta[0]), 2);
  // A prompt that is exactly the cached blocks still computes its last token.
  EXPECT_EQ(*m.Start(3, sys), 8);
  // Different content behind the same first block: hit stops at the divergence.
  auto c = sys;
  c[5] = 999;
  EXPECT_EQ(*m.Start(4, c), 4);
  EXPECT_EQ(m.prefix_stats().hit_tokens, 12u + 8u + 4u);
}

TEST(KvCache, EvictsLeastRecentlyFreedCachedBlocksFirst) {
  BlockPool pool(4, 2, 1, 4);
  KvCacheManager m(pool);
  auto x = Tokens(3, 10), y = Tokens(3, 20);
  for (auto [id, p] : {std::pair<uint64_t, std::vector<int64_t>*>{1, &x}, {2, &y}}) {
    ASSERT_TRUE(m.Start(id, *p).ok());
    ASSERT_TRUE(*m.Reserve(id, 3));
    ASSERT_TRUE(m.Commit(id, p->data(), 3).ok());
  }
  ASSERT_TRUE(m.Free(1).ok());  // x's full block freed first -> evicted first
  ASSERT_TRUE(m.Free(2).ok());
  EXPECT_EQ(pool.stats().cached_blocks, 2);
  ASSERT_TRUE(m.Start(3, Tokens(5, 40)).ok());
  ASSERT_TRUE(*m.Reserve(3, 5));  // 3 blocks: 2 never-hashed free ones + 1 eviction
  EXPECT_EQ(pool.stats().evictions, 1u);
  EXPECT_EQ(*m.Start(4, x), 0) << "x's block was the oldest and is gone";
  EXPECT_EQ(*m.Start(5, y), 2) << "y's block survived";
}

TEST(KvCache, BlocksHoldEveryLayerSeparately) {
  BlockPool pool(3, 4, 2, 8);
  float* a = pool.Data(1, 0);
  float* b = pool.Data(1, 1);
  EXPECT_EQ(b - a, 4 * 8);
  EXPECT_EQ(pool.Data(2, 0) - a, 2 * 4 * 8);
}

}  // namespace
}  // namespace dsv3
