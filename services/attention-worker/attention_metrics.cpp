#include "services/attention-worker/attention_metrics.h"

#include <prometheus/counter.h>

#include "common/metrics/metrics_server.h"
#include "services/attention-worker/engine/engine.h"

namespace dsv3 {

namespace {
// Latency buckets from 1 ms to ~65 s (x2), as coarse as vLLM's but wider at the low end
// for CPU-sized models.
std::vector<double> LatencyBuckets() { return ExponentialBuckets(0.001, 2.0, 17); }
}  // namespace

AttentionMetrics::AttentionMetrics(const ModelConfig& cfg, const AttentionMetricsOptions& opts)
    : cfg_(cfg), opts_(opts), registry_(std::make_shared<prometheus::Registry>()) {
  const std::map<std::string, std::string> base = {{"worker", opts.worker_id}, {"role", opts.role}};
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  using prometheus::BuildHistogram;
  auto gauge = [&](const char* name, const char* help) {
    return &BuildGauge().Name(name).Help(help).Labels(base).Register(*registry_).Add({});
  };
  auto counter = [&](const char* name, const char* help) {
    return &BuildCounter().Name(name).Help(help).Labels(base).Register(*registry_).Add({});
  };
  auto hist = [&](const char* name, const char* help, std::vector<double> buckets) {
    return &BuildHistogram().Name(name).Help(help).Labels(base).Register(*registry_).Add({}, buckets);
  };
  running_ = gauge("dsv3_attention_requests_running", "Sequences in the running batch (vllm:num_requests_running).");
  waiting_ = gauge("dsv3_attention_requests_waiting", "Sequences waiting to be scheduled (vllm:num_requests_waiting).");
  kv_usage_ = gauge("dsv3_attention_kv_cache_usage_ratio", "Fraction of KV blocks in use, 0..1 (vllm:kv_cache_usage_perc).");
  kv_blocks_total_ = gauge("dsv3_attention_kv_cache_blocks", "KV cache blocks of this worker.");
  kv_blocks_free_ = gauge("dsv3_attention_kv_cache_free_blocks", "KV cache blocks free or evictable.");
  parked_ = gauge("dsv3_attention_kv_imports_parked", "Imported KV (from prefill workers) waiting to be resumed.");
  prompt_tokens_ = counter("dsv3_attention_prompt_tokens_total", "Prompt tokens received (vllm:prompt_tokens_total).");
  generation_tokens_ =
      counter("dsv3_attention_generation_tokens_total", "Tokens generated (vllm:generation_tokens_total).");
  prefix_queries_ = counter("dsv3_attention_prefix_cache_queries_total",
                            "Prompt tokens looked up in the prefix cache (vllm:prefix_cache_queries).");
  prefix_hits_ = counter("dsv3_attention_prefix_cache_hits_total",
                         "Prompt tokens found in the prefix cache (vllm:prefix_cache_hits).");
  preemptions_ = counter("dsv3_attention_preemptions_total", "Sequences preempted for KV space (vllm:num_preemptions).");
  evictions_ = counter("dsv3_attention_kv_cache_evictions_total", "Cached prefix blocks evicted for space.");
  steps_ = counter("dsv3_attention_engine_steps_total", "Forward steps run by the engine.");
  ttft_ = hist("dsv3_attention_time_to_first_token_seconds", "Arrival to first token (vllm:time_to_first_token_seconds).",
               LatencyBuckets());
  itl_ = hist("dsv3_attention_inter_token_latency_seconds", "Between consecutive tokens of a sequence "
              "(vllm:inter_token_latency_seconds).", LatencyBuckets());
  e2e_ = hist("dsv3_attention_e2e_request_latency_seconds", "Arrival to last token (vllm:e2e_request_latency_seconds).",
              LatencyBuckets());
  queue_ = hist("dsv3_attention_request_queue_time_seconds", "Arrival to first scheduled (vllm:request_queue_time_seconds).",
                LatencyBuckets());
  step_seconds_ = hist("dsv3_attention_step_duration_seconds", "One forward step of the engine.", LatencyBuckets());
  step_tokens_ = hist("dsv3_attention_step_tokens", "Tokens computed per forward step (batch size in tokens).",
                      ExponentialBuckets(1, 2, 13));
  finished_ = &BuildCounter()
                   .Name("dsv3_attention_request_success_total")
                   .Help("Finished requests by finish reason (vllm:request_success_total).")
                   .Labels(base)
                   .Register(*registry_);
  kv_bytes_ = &BuildCounter()
                   .Name("dsv3_attention_kv_transfer_bytes_total")
                   .Help("Latent KV bytes moved between prefill and decode workers.")
                   .Labels(base)
                   .Register(*registry_);
  kv_transfers_ = &BuildCounter()
                       .Name("dsv3_attention_kv_transfers_total")
                       .Help("KV transfers started by this (prefill) worker, by transport and outcome.")
                       .Labels(base)
                       .Register(*registry_);
  kv_seconds_ = &BuildHistogram()
                     .Name("dsv3_attention_kv_transfer_duration_seconds")
                     .Help("One KV push, export to handle, by transport.")
                     .Labels(base)
                     .Register(*registry_);
  exchange_ = &BuildHistogram()
                   .Name("dsv3_attention_expert_exchange_duration_seconds")
                   .Help("One MoE layer's dispatch-to-combine exchange with the expert workers, by transport.")
                   .Labels(base)
                   .Register(*registry_)
                   .Add({{"transport", opts.expert_transport}}, ExponentialBuckets(0.0001, 2.0, 17));
  exchange_errors_ = counter("dsv3_attention_expert_exchange_failures_total",
                             "Forward steps failed by the expert exchange (worker died, deadline).");
  expert_failovers_ = counter("dsv3_attention_expert_failovers_total",
                              "Expert messages sent again to another worker (dead, hung or draining worker).");
  expert_held_ = counter("dsv3_attention_expert_held_exchanges_total",
                         "MoE exchanges that waited for the only owner of some experts to come back.");
  experts_down_ = gauge("dsv3_attention_expert_workers_down", "Expert workers marked down and being probed.");
  routed_ = &BuildCounter()
                 .Name("dsv3_attention_expert_routed_tokens_total")
                 .Help("Token-to-expert assignments by MoE layer and expert (or routing group on large models).")
                 .Labels(base)
                 .Register(*registry_);
  if (opts.resolution != ExpertMetricsResolution::kOff) {
    buckets_ = opts.resolution == ExpertMetricsResolution::kExpert ? cfg.n_routed_experts : std::max<int64_t>(1, cfg.n_group);
    routed_counts_ = std::vector<std::atomic<uint64_t>>(static_cast<size_t>(cfg.num_hidden_layers * buckets_));
    routed_flushed_.assign(routed_counts_.size(), 0);
    routed_series_.assign(routed_counts_.size(), nullptr);
  }
  exchanges_seen_.assign(static_cast<size_t>(cfg.num_hidden_layers), 0);
  exchange_seconds_seen_.assign(static_cast<size_t>(cfg.num_hidden_layers), 0.0);
}

AttentionMetrics::~AttentionMetrics() {
  stop_ = true;
  if (collector_.joinable()) collector_.join();
}

void AttentionMetrics::Attach(Engine* engine, const ExpertDispatcher* dispatcher) {
  engine_ = engine;
  dispatcher_ = dispatcher;
  collector_ = std::thread([this] {
    while (!stop_.load()) {
      Collect();
      for (int i = 0; i < 10 && !stop_.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
}

void AttentionMetrics::OnStep(const StepInfo& step) {
  step_seconds_->Observe(step.seconds);
  step_tokens_->Observe(static_cast<double>(step.tokens));
  if (step.failed && dispatcher_) exchange_errors_->Increment();
  if (!dispatcher_) return;
  // One exchange per MoE layer per step: the per-layer deltas are the latencies.
  const ExchangeStats& st = dispatcher_->stats();
  if (st.failovers > failovers_seen_) expert_failovers_->Increment(static_cast<double>(st.failovers - failovers_seen_));
  if (st.held_exchanges > held_seen_) expert_held_->Increment(static_cast<double>(st.held_exchanges - held_seen_));
  failovers_seen_ = st.failovers;
  held_seen_ = st.held_exchanges;
  experts_down_->Set(static_cast<double>(dispatcher_->health().num_down()));
  for (size_t l = 0; l < st.exchanges_per_layer.size() && l < exchanges_seen_.size(); ++l) {
    const uint64_t n = st.exchanges_per_layer[l] - exchanges_seen_[l];
    if (n == 0) continue;
    const double secs = st.seconds_per_layer[l] - exchange_seconds_seen_[l];
    for (uint64_t i = 0; i < n; ++i) exchange_->Observe(secs / static_cast<double>(n));
    exchanges_seen_[l] = st.exchanges_per_layer[l];
    exchange_seconds_seen_[l] = st.seconds_per_layer[l];
  }
}

void AttentionMetrics::OnRouting(int64_t layer, const RoutingResult& r) {
  if (buckets_ == 0) return;
  const int64_t per_bucket = cfg_.n_routed_experts / buckets_;
  for (int32_t e : r.experts) {
    if (e < 0) continue;
    routed_counts_[static_cast<size_t>(layer * buckets_ + e / per_bucket)].fetch_add(1, std::memory_order_relaxed);
  }
}

void AttentionMetrics::OnFirstToken(double ttft, double queue) {
  ttft_->Observe(ttft);
  queue_->Observe(queue);
}

void AttentionMetrics::OnInterTokenLatency(double seconds) { itl_->Observe(seconds); }

void AttentionMetrics::OnRequestFinished(FinishReason why, double e2e, int64_t, int64_t) {
  e2e_->Observe(e2e);
  std::lock_guard<std::mutex> lk(kv_mu_);
  finished_->Add({{"finished_reason", FinishReasonName(why)}}).Increment();
}

void AttentionMetrics::OnKvTransfer(const std::string& transport, double seconds, int64_t bytes, bool ok) {
  std::lock_guard<std::mutex> lk(kv_mu_);
  kv_transfers_->Add({{"transport", transport}, {"outcome", ok ? "ok" : "failed"}}).Increment();
  if (!ok) return;
  kv_bytes_->Add({{"direction", "sent"}, {"transport", transport}}).Increment(static_cast<double>(bytes));
  kv_seconds_->Add({{"transport", transport}}, LatencyBuckets()).Observe(seconds);
}

void AttentionMetrics::OnKvReceived(int64_t bytes) {
  std::lock_guard<std::mutex> lk(kv_mu_);
  kv_bytes_->Add({{"direction", "received"}, {"transport", "any"}}).Increment(static_cast<double>(bytes));
}

void AttentionMetrics::Collect() {
  if (!engine_) return;
  const EngineLoad l = engine_->load();
  running_->Set(static_cast<double>(l.running));
  waiting_->Set(static_cast<double>(l.waiting));
  kv_blocks_total_->Set(static_cast<double>(l.kv_blocks_total));
  kv_blocks_free_->Set(static_cast<double>(l.kv_blocks_free));
  kv_usage_->Set(l.kv_blocks_total ? 1.0 - static_cast<double>(l.kv_blocks_free) / l.kv_blocks_total : 0.0);
  parked_->Set(static_cast<double>(l.parked_imports));
  auto bump = [](prometheus::Counter* c, uint64_t now, uint64_t* last) {
    if (now > *last) c->Increment(static_cast<double>(now - *last));
    *last = now;
  };
  bump(prompt_tokens_, l.prompt_tokens, &last_prompt_);
  bump(generation_tokens_, l.generated_tokens, &last_generated_);
  bump(prefix_queries_, l.prefix_queried_tokens, &last_queried_);
  bump(prefix_hits_, l.prefix_hit_tokens, &last_hits_);
  bump(preemptions_, l.preemptions, &last_preempt_);
  bump(evictions_, l.evictions, &last_evict_);
  bump(steps_, l.steps, &last_steps_);
  for (size_t i = 0; i < routed_counts_.size(); ++i) {
    const uint64_t now = routed_counts_[i].load(std::memory_order_relaxed);
    if (now == routed_flushed_[i]) continue;
    if (!routed_series_[i]) {
      const int64_t layer = static_cast<int64_t>(i) / buckets_, b = static_cast<int64_t>(i) % buckets_;
      const char* key = buckets_ == cfg_.n_routed_experts ? "expert" : "expert_group";
      routed_series_[i] = &routed_->Add({{"layer", std::to_string(layer)}, {key, std::to_string(b)}});
    }
    routed_series_[i]->Increment(static_cast<double>(now - routed_flushed_[i]));
    routed_flushed_[i] = now;
  }
}

}  // namespace dsv3
