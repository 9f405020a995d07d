// Scheduler: decides each step's work (vLLM-style continuous batching). Every step has a
// token budget; running sequences go first, decodes before prompt chunks, then waiting
// sequences are admitted in arrival order (FCFS) while budget and the running cap allow.
// A prompt larger than the remaining budget is computed in chunks over several steps.
// When the cache cannot supply blocks, the most recently admitted running sequence is
// preempted (KV dropped, requeued at the front of the waiting queue, recomputed later);
// nothing is admitted in a step that preempted. Not thread-safe: the engine thread owns it.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "services/attention-worker/engine/sequence.h"
#include "services/attention-worker/kv_cache/kv_cache_manager.h"

namespace dsv3 {

struct SchedulerConfig {
  int64_t max_batch_tokens = 512;  // tokens computed per step, all sequences together
  int64_t max_running = 64;        // sequences in the running batch
  // Tokens per step of a prompt that wants prompt logprobs (one vocab-wide logits row each).
  int64_t max_prompt_logit_rows = 128;
};

struct ScheduledSlice {
  Sequence* seq;
  int64_t num_tokens;  // tokens [seq->num_computed, seq->num_computed + num_tokens)
};

struct SchedulerOutput {
  std::vector<ScheduledSlice> slices;
  std::vector<Sequence*> preempted;
  // Running alone and still no room to grow: the cache is too small for this sequence.
  std::vector<Sequence*> cannot_grow;
};

struct SchedulerStats {
  int64_t waiting = 0, running = 0;
  uint64_t preemptions = 0;
};

class Scheduler {
 public:
  Scheduler(const SchedulerConfig& cfg, KvCacheManager& kv) : cfg_(cfg), kv_(kv) {}

  void AddWaiting(Sequence* s);
  // A sequence whose KV already exists (forked or imported) joins the running batch.
  void AddRunning(Sequence* s);
  // Removes a sequence wherever it is and frees its KV (finish, abort, error).
  void Remove(Sequence* s);

  SchedulerOutput Schedule();
  SchedulerStats stats() const;
  bool idle() const { return waiting_.empty() && running_.empty(); }
  const SchedulerConfig& config() const { return cfg_; }

 private:
  void Preempt(Sequence* s, SchedulerOutput* out);
  int64_t SliceTokens(const Sequence* s, int64_t budget) const;
  void DropKv(Sequence* s);

  SchedulerConfig cfg_;
  KvCacheManager& kv_;
  std::deque<Sequence*> waiting_;
  std::vector<Sequence*> running_;  // admission order: the back is preempted first
  uint64_t preemptions_ = 0;
};

}  // namespace dsv3
