// Sequence: one choice of one request as the scheduler sees it. Its tokens are the prompt
// followed by what it generated; num_computed of them have KV in the cache. A step
// computes the next slice of the uncomputed tokens; when none are left the sequence
// samples its next token. Preemption by recompute just drops the KV (num_computed = 0):
// the tokens are kept, so the sequence later recomputes prompt + generated in one prefill.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/sampling/json_constraint.h"
#include "common/sampling/sequence_sampler.h"
#include "services/attention-worker/engine/generate_request.h"

namespace dsv3 {

struct EngineRequest;

enum class SeqState { kWaiting, kRunning, kFinished };

struct Sequence {
  uint64_t id = 0;  // the KV cache's sequence id, unique in the engine
  EngineRequest* req = nullptr;
  int32_t choice = 0;
  std::vector<int64_t> tokens;
  int64_t prompt_len = 0;
  int64_t num_computed = 0;
  bool in_kv = false;  // started in the KvCacheManager
  SeqState state = SeqState::kWaiting;
  FinishReason finish = FinishReason::kNone;
  std::unique_ptr<SequenceSampler> sampler;
  std::unique_ptr<JsonConstraint> json;  // response_format json_object
  int64_t preemptions = 0;
  // The next prompt position whose logprob is owed (prompt logprobs); prompt_len when none
  // are (or no longer) wanted. Survives preemption, so recomputation never repeats one.
  int64_t prompt_logprob_next = 0;
  // A migrated request's replay: positions from here on (its earlier output) are computed
  // one per step, as the original decoded them, so its logits are the original's bit for
  // bit (steps of <= 64 tokens are batch-invariant). -1: no replay.
  int64_t replay_from = -1;
  std::chrono::steady_clock::time_point last_token_time;  // inter-token latency

  int64_t generated() const { return static_cast<int64_t>(tokens.size()) - prompt_len; }
  int64_t remaining() const { return static_cast<int64_t>(tokens.size()) - num_computed; }
  bool wants_prompt_logits() const { return prompt_logprob_next < prompt_len; }
};

}  // namespace dsv3
