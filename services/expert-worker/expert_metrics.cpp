#include "services/expert-worker/expert_metrics.h"

#include "common/metrics/metrics_server.h"

namespace dsv3 {

ExpertMetrics::ExpertMetrics(const std::string& worker_id, const std::string& transport)
    : registry_(std::make_shared<prometheus::Registry>()) {
  const std::map<std::string, std::string> base = {{"worker", worker_id}, {"transport", transport}};
  using namespace prometheus;
  batches_ = &BuildCounter().Name("dsv3_expert_batches_total").Help("MoE layer batches served.").Labels(base)
                  .Register(*registry_).Add({});
  tokens_ = &BuildCounter().Name("dsv3_expert_tokens_total").Help("Tokens in the batches served.").Labels(base)
                 .Register(*registry_).Add({});
  errors_ = &BuildCounter().Name("dsv3_expert_batch_errors_total")
                 .Help("Batches answered with an error (malformed, expert not hosted).").Labels(base)
                 .Register(*registry_).Add({});
  batch_tokens_ = &BuildHistogram().Name("dsv3_expert_batch_tokens").Help("Tokens per batch (expert-side batch size).")
                       .Labels(base).Register(*registry_).Add({}, ExponentialBuckets(1, 2, 13));
  seconds_ = &BuildHistogram().Name("dsv3_expert_batch_duration_seconds")
                  .Help("Decode, expert compute and encode of one batch.").Labels(base).Register(*registry_)
                  .Add({}, ExponentialBuckets(0.0001, 2, 17));
  hosted_ = &BuildGauge().Name("dsv3_expert_hosted_experts").Help("Routed experts hosted by this worker (per MoE layer).")
                 .Labels(base).Register(*registry_);
}

void ExpertMetrics::SetHosted(const std::string& experts, int64_t count) {
  hosted_->Add({{"experts", experts}}).Set(static_cast<double>(count));
}

void ExpertMetrics::OnBatch(int64_t tokens, double seconds, bool ok) {
  batches_->Increment();
  if (!ok) {
    errors_->Increment();
    return;
  }
  tokens_->Increment(static_cast<double>(tokens));
  batch_tokens_->Observe(static_cast<double>(tokens));
  seconds_->Observe(seconds);
}

}  // namespace dsv3
