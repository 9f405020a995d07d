// Engine: the attention worker's serving loop (vLLM's engine-core loop, one thread).
// Callers on other threads submit requests, abort them, import KV handed over by a
// prefill worker and read load reports; the engine thread owns the scheduler, the paged
// KV cache and the model, and runs: apply commands -> schedule -> one forward over every
// scheduled slice -> sample -> publish outputs -> repeat (sleeping when idle).
//
// Sampling is per sequence (its own seeded generator and penalty state), so a request's
// tokens do not depend on what else shares the step, up to the batch invariance of the
// kernels (see the README: reductions are per row, but GEMV vs GEMM paths differ by
// batch size, so logits agree to ~1e-6, not bit for bit).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/model/transformer.h"
#include "common/sampling/json_constraint.h"
#include "services/attention-worker/engine/engine_observer.h"
#include "services/attention-worker/engine/generate_request.h"
#include "services/attention-worker/engine/scheduler.h"
#include "services/attention-worker/engine/sequence.h"
#include "services/attention-worker/kv_cache/block_pool.h"
#include "services/attention-worker/kv_cache/kv_cache_manager.h"

namespace dsv3 {

struct EngineConfig {
  SchedulerConfig scheduler;
  int64_t kv_cache_bytes = 256ll << 20;  // latent KV budget; blocks = bytes / block bytes
  int64_t num_blocks = 0;                // > 0 overrides kv_cache_bytes (tests)
  int64_t block_size = 16;               // positions per block
  int64_t max_model_len = 0;             // 0: the model's max_position_embeddings
  std::string role = "both";             // prefill | decode | both (reported, not enforced)
  std::string worker_id = "attention-0";
  double import_ttl_seconds = 60;        // imported KV not resumed by then is freed
  int64_t max_n = 16;
  // Admission: requests (and their prompt tokens) accepted and not yet finished; beyond
  // either bound Submit answers RESOURCE_EXHAUSTED (the gateway tries another worker, then
  // answers 429 with Retry-After). A prompt alone is always admitted (its own length is
  // bounded by the context).
  int64_t max_queued_requests = 1024;
  int64_t max_queued_prompt_tokens = 1 << 20;
  // A migrated request (generated_prefix g) recomputes its earlier output one token per
  // step when g is at most this (bit-identical to the original run), in one prefill above
  // it (equal within float32 tolerance, g times fewer steps).
  int64_t max_exact_replay_tokens = 256;
  EngineObserver* observer = nullptr;    // metrics; must outlive the engine
  // Where tokenizer.json is (the checkpoint directory): the vocabulary's bytes for
  // constrained decoding (json_object), loaded on the first such request. Empty: such
  // requests are refused.
  std::string tokenizer_dir;
};

struct EngineLoad {
  int64_t waiting = 0, running = 0;
  int64_t kv_blocks_total = 0, kv_blocks_free = 0;
  int64_t parked_imports = 0;
  uint64_t prefix_queried_tokens = 0, prefix_hit_tokens = 0;
  uint64_t preemptions = 0, steps = 0, prompt_tokens = 0, generated_tokens = 0, evictions = 0;
  std::vector<uint64_t> recent_prefix_hashes;  // first-block hashes of recent prompts
};

struct EngineRequest;

// The engine thread is the only caller of `model` while the engine lives: one engine per
// model instance (the Transformer's expert executor keeps per-step state).
class Engine {
 public:
  static StatusOr<std::unique_ptr<Engine>> Create(Transformer& model, const EngineConfig& cfg);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Checks a request against the model and the cache (errors name the field).
  Status Validate(const GenerateParams& p) const;
  StatusOr<std::shared_ptr<OutputStream>> Submit(GenerateParams p);
  // Ends the request's sequences now and frees their blocks; false if unknown.
  bool Abort(const std::string& request_id);

  // Decode side of prefill/decode disaggregation: places the KV in the cache (all or
  // nothing) and parks it under the returned handle until Resume or the TTL.
  StatusOr<std::string> ImportKv(std::shared_ptr<KvExport> kv);
  StatusOr<std::shared_ptr<OutputStream>> Resume(const std::string& handle, const std::string& request_id);

  EngineLoad load() const;
  int64_t max_context() const { return max_context_; }
  int64_t block_size() const { return cfg_.block_size; }
  const EngineConfig& config() const { return cfg_; }
  const ModelConfig& model_config() const { return model_.config(); }

 private:
  struct Parked {
    uint64_t seq_id;
    std::shared_ptr<KvExport> kv;  // data released after the copy
    std::chrono::steady_clock::time_point deadline;
  };

  Engine(Transformer& model, const EngineConfig& cfg, int64_t num_blocks);
  void Loop();
  // Runs `fn` on the engine thread and waits for it.
  void RunOnEngine(std::function<void()> fn);
  void Post(std::function<void()> fn);
  void Step();
  void StartRequest(std::shared_ptr<EngineRequest> r);
  std::unique_ptr<Sequence> NewSequence(EngineRequest* r, int32_t choice, std::unique_ptr<SequenceSampler> sampler);
  std::unique_ptr<SequenceSampler> NewSampler(const GenerateParams& p, int32_t choice, uint64_t seed);
  void SampleNext(Sequence* s, const float* row);
  void SampleInto(Sequence* s, const float* row);
  // Samples under the sequence's JSON constraint when it has one (and advances it).
  SampledToken SampleConstrained(SequenceSampler& sampler, JsonConstraint* json, const float* row);
  void NoteToken(Sequence* s);
  void ExportPrefill(Sequence* s, const float* row);
  FinishReason CheckFinish(const Sequence* s, int64_t token) const;
  void FinishSequence(Sequence* s, FinishReason why);
  void FailRequest(EngineRequest* r, const Status& st);
  void MaybeCompleteRequest(EngineRequest* r);
  void FlushOutputs();
  RequestOutput& Pending(EngineRequest* r);
  ChoiceOutput& PendingChoice(EngineRequest* r, int32_t choice);
  // Prompt logprobs owed by `s` from rows [0, n) of a slice starting at position `start`.
  void EmitPromptLogprobs(Sequence* s, int64_t start, int64_t n, const float* rows);
  void ExpireImports();
  void PublishLoad();

  // Loads the vocabulary's bytes once (any thread); the result stays for the engine's life.
  Status EnsureTokenBytes();

  Transformer& model_;
  EngineConfig cfg_;
  std::once_flag token_bytes_once_;
  std::shared_ptr<const TokenBytes> token_bytes_;
  Status token_bytes_status_;
  int64_t max_context_;
  BlockPool pool_;
  KvCacheManager kv_;
  Scheduler sched_;
  std::mt19937_64 seed_source_;  // seeds for requests without one
  // Admitted, unfinished requests and their prompt tokens (Submit runs on callers' threads;
  // a request's ticket gives its share back when the engine drops the request).
  struct Admission {
    std::atomic<int64_t> requests{0}, prompt_tokens{0};
  };
  Admission admission_;

  std::unordered_map<std::string, std::vector<std::shared_ptr<EngineRequest>>> by_id_;  // engine thread
  std::vector<EngineRequest*> touched_;  // requests with pending output this step
  std::map<std::string, Parked> parked_;
  uint64_t next_seq_id_ = 1;
  uint64_t next_handle_ = 1;
  std::vector<float> logits_;
  ForwardObserver forward_observer_;
  SamplingScratch scratch_;
  std::vector<uint8_t> allowed_;  // constrained decoding mask, reused
  std::vector<uint64_t> recent_hashes_;
  uint64_t steps_ = 0, prompt_tokens_ = 0, generated_tokens_ = 0;

  mutable std::mutex cmd_mu_;
  std::condition_variable cmd_cv_;
  std::vector<std::function<void()>> commands_;
  bool stop_ = false;

  mutable std::mutex load_mu_;
  EngineLoad load_;

  std::thread thread_;
};

}  // namespace dsv3
