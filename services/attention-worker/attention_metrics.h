// AttentionMetrics: the attention worker's Prometheus metrics (docs/OBSERVABILITY.md lists
// them with their vLLM equivalents). Histograms are observed as events happen (engine
// thread, EngineObserver); gauges and totals are refreshed from the engine's load report
// once a second by a collector thread; routed-token counts are accumulated in atomics and
// flushed by the same thread (per layer x expert, or x routing group on big models).
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "common/transport/expert_dispatcher.h"
#include "services/attention-worker/engine/engine_observer.h"

namespace dsv3 {

class Engine;

enum class ExpertMetricsResolution { kOff, kGroup, kExpert };

struct AttentionMetricsOptions {
  std::string worker_id;
  std::string role;
  std::string expert_transport = "in-process";  // label of the exchange histogram
  ExpertMetricsResolution resolution = ExpertMetricsResolution::kExpert;
};

class AttentionMetrics final : public EngineObserver {
 public:
  AttentionMetrics(const ModelConfig& cfg, const AttentionMetricsOptions& opts);
  ~AttentionMetrics() override;
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }
  // Starts the collector; `dispatcher` (may be null) is read only from engine callbacks.
  void Attach(Engine* engine, const ExpertDispatcher* dispatcher);

  void OnStep(const StepInfo& step) override;
  void OnRouting(int64_t layer, const RoutingResult& routing) override;
  void OnFirstToken(double ttft_seconds, double queue_seconds) override;
  void OnInterTokenLatency(double seconds) override;
  void OnRequestFinished(FinishReason why, double e2e_seconds, int64_t prompt_tokens, int64_t completion_tokens) override;
  void OnKvTransfer(const std::string& transport, double seconds, int64_t bytes, bool ok);
  void OnKvReceived(int64_t bytes);

 private:
  void Collect();

  const ModelConfig& cfg_;
  AttentionMetricsOptions opts_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Gauge *running_, *waiting_, *kv_usage_, *kv_blocks_total_, *kv_blocks_free_, *parked_;
  prometheus::Counter *prompt_tokens_, *generation_tokens_, *prefix_queries_, *prefix_hits_, *preemptions_,
      *evictions_, *steps_;
  prometheus::Histogram *ttft_, *itl_, *e2e_, *queue_, *step_seconds_, *step_tokens_, *exchange_;
  prometheus::Family<prometheus::Counter>* finished_;
  prometheus::Family<prometheus::Counter>* kv_bytes_;
  prometheus::Family<prometheus::Counter>* kv_transfers_;
  prometheus::Family<prometheus::Histogram>* kv_seconds_;
  prometheus::Family<prometheus::Counter>* routed_;
  prometheus::Counter* exchange_errors_;
  // Self-healing (docs/RELIABILITY.md): messages failed over to another expert worker,
  // exchanges held for a restart, expert workers marked down now.
  prometheus::Counter *expert_failovers_, *expert_held_;
  prometheus::Gauge* experts_down_;
  uint64_t failovers_seen_ = 0, held_seen_ = 0;  // engine thread
  std::mutex kv_mu_;  // Family::Add from service threads

  // Routed-token counts: [layer][bucket], bucket = expert or routing group.
  int64_t buckets_ = 0;
  std::vector<std::atomic<uint64_t>> routed_counts_;
  std::vector<uint64_t> routed_flushed_;
  std::vector<prometheus::Counter*> routed_series_;

  Engine* engine_ = nullptr;
  const ExpertDispatcher* dispatcher_ = nullptr;
  std::vector<uint64_t> exchanges_seen_;  // per layer (engine thread)
  std::vector<double> exchange_seconds_seen_;
  uint64_t last_prompt_ = 0, last_generated_ = 0, last_queried_ = 0, last_hits_ = 0, last_preempt_ = 0,
           last_evict_ = 0, last_steps_ = 0;
  std::atomic<bool> stop_{false};
  std::thread collector_;
};

}  // namespace dsv3
