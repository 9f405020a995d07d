// What a caller asks the engine for, and what the engine answers, independent of gRPC
// (the service translates; tests drive the engine directly).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/sampling/sampling_config.h"
#include "common/sampling/sequence_sampler.h"
#include "common/status.h"

namespace dsv3 {

enum class FinishReason { kNone, kStop, kLength, kAbort, kPrefillDone, kError };
const char* FinishReasonName(FinishReason r);

struct GenerateParams {
  std::string request_id;
  std::vector<int64_t> prompt;
  SamplingConfig sampling;
  int32_t max_tokens = 16;
  int32_t n = 1;
  std::vector<int64_t> stop_token_ids;
  bool ignore_eos = false;
  // Stop after each choice's first token and hand the prompt's KV over (KvExport).
  bool prefill_only = false;
  // Prompt logprobs (echo with logprobs): < 0 none; k >= 0: the logprob of every prompt
  // token after the first, plus its k most likely alternatives (k <= 20). Such a prompt is
  // computed in full (no prefix-cache hit) and in chunks of at most
  // SchedulerConfig::max_prompt_logit_rows tokens, since each token then needs a vocab row.
  int32_t prompt_logprobs = -1;
  // Migration: the last generated_prefix prompt tokens are this request's own output from
  // another worker (sampler position, penalties, JSON state); n == 1.
  int32_t generated_prefix = 0;
};

// The prompt's latent KV and the sampling state after the first token, as a prefill
// worker hands it to a decode worker. data: for each position of the prompt, each layer's
// latent_dim floats, layer-major: [layers][positions][latent_dim].
struct KvExport {
  GenerateParams params;
  std::vector<int64_t> first_tokens;           // one per choice
  std::vector<SampledToken> first_logprobs;    // one per choice
  std::vector<std::string> sampler_states;     // one per choice, after the first token
  int64_t num_positions = 0;
  int64_t layers = 0;
  int64_t latent_dim = 0;
  int64_t cached_prompt_tokens = 0;
  std::vector<float> data;
};

struct ChoiceOutput {
  int32_t index = 0;
  std::vector<int64_t> tokens;
  std::vector<SampledToken> logprobs;  // parallel to tokens when logprobs were asked for
  FinishReason finish = FinishReason::kNone;
};

struct RequestOutput {
  std::vector<ChoiceOutput> choices;
  // Prompt logprobs computed this step: prompt positions [prompt_logprobs_start, + size),
  // the token at each position being the prompt's (position 0 has none).
  int64_t prompt_logprobs_start = 0;
  std::vector<SampledToken> prompt_logprobs;
  bool final = false;
  Status error;  // final with an error: the request failed
  int64_t prompt_tokens = 0, completion_tokens = 0, cached_prompt_tokens = 0;
  double queue_seconds = -1;  // set on the first output
  std::shared_ptr<KvExport> kv_export;  // prefill_only, final
};

// One request's outputs, produced by the engine thread and consumed by the caller's.
class OutputStream {
 public:
  void Push(RequestOutput o) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      q_.push_back(std::move(o));
    }
    cv_.notify_all();
  }
  // Waits up to `timeout_ms` for the next output; nullopt on timeout.
  std::optional<RequestOutput> Pop(int64_t timeout_ms) {
    std::unique_lock<std::mutex> lk(mu_);
    if (!cv_.wait_for(lk, std::chrono::milliseconds(timeout_ms), [&] { return !q_.empty(); })) return std::nullopt;
    RequestOutput o = std::move(q_.front());
    q_.pop_front();
    return o;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<RequestOutput> q_;
};

}  // namespace dsv3
