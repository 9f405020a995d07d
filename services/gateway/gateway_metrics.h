// The gateway's Prometheus metrics (names in one place, listed in README.md). Base units,
// `_total` only on counters, fixed label sets. Thread-safe: prometheus-cpp metrics are
// atomic, and the label-keyed lookups here take the family's own lock.
#pragma once

#include <memory>
#include <string>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace dsv3::gateway {

class GatewayMetrics {
 public:
  GatewayMetrics();

  void ObserveHttp(const std::string& route, int status, double seconds);
  void ObserveTtft(double seconds) { ttft_->Observe(seconds); }
  void ObserveInterToken(double seconds) { itl_->Observe(seconds); }
  void ObserveE2e(double seconds) { e2e_->Observe(seconds); }
  void AddPromptTokens(double n) { prompt_tokens_->Increment(n); }
  void AddGenerationTokens(double n) { generation_tokens_->Increment(n); }
  void IncRetries() { retries_->Increment(); }
  prometheus::Gauge& in_flight() { return *in_flight_; }
  void SetWorkerUp(const std::string& address, const std::string& worker_id, const std::string& role, bool up);

  // Text exposition format 0.0.4.
  std::string Serialize() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* http_requests_;
  prometheus::Family<prometheus::Histogram>* http_duration_;
  prometheus::Family<prometheus::Gauge>* worker_up_;
  prometheus::Histogram* ttft_;
  prometheus::Histogram* itl_;
  prometheus::Histogram* e2e_;
  prometheus::Counter* prompt_tokens_;
  prometheus::Counter* generation_tokens_;
  prometheus::Counter* retries_;
  prometheus::Gauge* in_flight_;
};

}  // namespace dsv3::gateway
