#include "services/gateway/generate_call.h"

#include <cstdio>
#include <random>

#include "services/gateway/gateway_metrics.h"

namespace dsv3::gateway {

namespace {
// Failures that say "this worker, now" rather than "this request": worth another worker.
bool Retryable(grpc::StatusCode c) {
  return c == grpc::StatusCode::UNAVAILABLE || c == grpc::StatusCode::RESOURCE_EXHAUSTED ||
         c == grpc::StatusCode::ABORTED;
}
// Mid-generation: the worker is gone or going (connection lost, draining). Errors about the
// request itself (bad argument, deadline) are not worth moving.
bool Migratable(grpc::StatusCode c) { return c == grpc::StatusCode::UNAVAILABLE || c == grpc::StatusCode::ABORTED; }

// Every request gets a seed here, so that a migrated unseeded request keeps its random
// stream (the worker would otherwise draw a fresh seed on the new worker).
attn::GenerateRequest Seeded(attn::GenerateRequest r) {
  if (!r.sampling().has_seed()) {
    std::random_device rd;
    r.mutable_sampling()->set_has_seed(true);
    r.mutable_sampling()->set_seed((static_cast<uint64_t>(rd()) << 32) ^ rd());
  }
  return r;
}
}  // namespace

GenerateCall::GenerateCall(Router& router, attn::GenerateRequest request, std::vector<int32_t> prompt,
                           std::shared_ptr<GenerateObserver> observer, GatewayMetrics* metrics)
    : router_(router),
      metrics_(metrics),
      original_(Seeded(std::move(request))),
      request_(original_),
      prompt_(std::move(prompt)),
      observer_(std::move(observer)) {}

void GenerateCall::Start() { Attempt(); }

void GenerateCall::Attempt() {
  std::unique_lock<std::mutex> l(mu_);
  if (cancelled_) {
    l.unlock();
    Finish(absl::CancelledError("gateway: request cancelled"));
    return;
  }
  ++attempts_;
  const bool pd = router_.disaggregated();
  auto lease = router_.Pick(pd ? WorkerRole::kPrefill : WorkerRole::kBoth, prompt_, tried_);
  std::unique_ptr<WorkerLease> decode;
  if (pd && lease) decode = router_.Pick(WorkerRole::kDecode, prompt_, tried_);
  if (!lease || (pd && !decode)) {
    // Every worker tried and failed: say why the last one did (a full queue is a 429,
    // not a 503); otherwise none is up.
    const Status why = !last_failure_.ok() ? last_failure_
                                           : absl::UnavailableError(pd ? "no prefill/decode attention worker is available"
                                                                       : "no attention worker is available");
    l.unlock();
    Finish(why);
    return;
  }
  tried_.insert(lease->client().address());
  attn::GenerateRequest req = request_;
  Phase phase = Phase::kSingle;
  if (pd) {
    phase = Phase::kPrefill;
    req.set_prefill_only(true);
    req.set_decode_worker(decode->client().address());
    choice_open_.assign(static_cast<size_t>(std::max(1, request_.n())), true);
    kv_handle_.clear();
  }
  lease_ = std::move(lease);
  decode_lease_ = std::move(decode);
  WorkerLease* current = lease_.get();
  const uint64_t seq = ++stream_seq_;
  l.unlock();
  StartStream(phase, seq, current, std::move(req));
}

void GenerateCall::StartStream(Phase phase, uint64_t seq, WorkerLease* lease, attn::GenerateRequest req) {
  auto self = shared_from_this();
  auto stream = lease->client().Generate(
      std::move(req), [self, phase](const attn::GenerateResponse& r) { self->OnMessage(phase, r); },
      [self, phase](const grpc::Status& s) { self->OnStreamDone(phase, s); });
  bool cancel_now = false;
  {
    std::lock_guard<std::mutex> l(mu_);
    // Callbacks can run before Generate returns, even start the next phase: only the
    // newest stream is the one to cancel.
    if (seq == stream_seq_) stream_ = stream;
    cancel_now = cancelled_;
  }
  if (cancel_now) stream->Cancel();
}

void GenerateCall::OnMessage(Phase phase, const attn::GenerateResponse& r) {
  bool has_tokens = false;
  for (const auto& c : r.choices()) has_tokens |= c.token_ids_size() > 0;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (has_tokens) started_ = true;
    for (const auto& c : r.choices()) {
      if (c.index() != 0) continue;
      generated_.insert(generated_.end(), c.token_ids().begin(), c.token_ids().end());
      const auto f = c.finish_reason();
      choice_ended_ |= f == attn::FINISH_STOP || f == attn::FINISH_LENGTH || f == attn::FINISH_ABORT;
    }
    if (phase == Phase::kPrefill) {
      if (!r.kv_handle().empty()) kv_handle_ = r.kv_handle();
      for (const auto& c : r.choices()) {
        const auto f = c.finish_reason();
        if (f == attn::FINISH_STOP || f == attn::FINISH_LENGTH || f == attn::FINISH_ABORT) {
          if (c.index() >= 0 && static_cast<size_t>(c.index()) < choice_open_.size()) choice_open_[c.index()] = false;
        }
      }
    }
  }
  observer_->OnResponse(r);
}

void GenerateCall::OnStreamDone(Phase phase, const grpc::Status& s) {
  std::unique_lock<std::mutex> l(mu_);
  stream_.reset();
  ++stream_seq_;  // a late StartStream of this stream must not store it
  const bool cancelled = cancelled_;
  const bool started = started_;
  if (cancelled) {
    l.unlock();
    Finish(absl::CancelledError("gateway: request cancelled"));
    return;
  }
  if (!s.ok()) {
    std::string addr = lease_ ? lease_->client().address() : "";
    // A prefill worker whose KV push failed is fine; the decode worker it pushed to is not
    // (dead or draining): blame that one, and let the prefill worker be picked again.
    if (phase == Phase::kPrefill && decode_lease_ &&
        s.error_message().find("KV transfer to decode worker") != std::string::npos) {
      tried_.erase(addr);
      addr = decode_lease_->client().address();
      tried_.insert(addr);
    }
    const bool retry = !started && phase != Phase::kDecode && Retryable(s.error_code()) && attempts_ < kMaxAttempts;
    const bool migrate = !retry && started && Migratable(s.error_code()) && PrepareMigration();
    if (migrate) {
      // Not the failed worker again (for the pair: the one whose stream broke).
      tried_.clear();
      if (!addr.empty()) tried_.insert(addr);
    }
    if (retry || migrate) last_failure_ = FromGrpc(s, StrCat("attention worker ", addr));
    l.unlock();
    if (s.error_code() == grpc::StatusCode::UNAVAILABLE && !addr.empty()) router_.ReportUnreachable(addr, s.error_message());
    if (retry || migrate) {
      if (metrics_) metrics_->IncRetries();
      if (migrate) {
        std::fprintf(stderr, "dsv3-gateway: request %s: attention worker %s failed after %zu token(s) (%s); continuing on another worker\n",
                     original_.request_id().c_str(), addr.c_str(), generated_.size(), s.error_message().c_str());
      }
      Attempt();
      return;
    }
    Finish(FromGrpc(s, StrCat("attention worker ", addr)));
    return;
  }
  if (phase != Phase::kPrefill) {
    l.unlock();
    Finish(Status());
    return;
  }
  // Prefill finished: continue on the decode worker unless every choice already ended.
  bool any_open = false;
  for (bool open : choice_open_) any_open |= open;
  if (!any_open) {
    l.unlock();
    Finish(Status());
    return;
  }
  if (kv_handle_.empty()) {
    l.unlock();
    Finish(Internal("gateway", "the prefill worker finished without a kv_handle"));
    return;
  }
  attn::GenerateRequest req = request_;
  req.set_resume_kv_handle(kv_handle_);
  lease_ = std::move(decode_lease_);
  WorkerLease* current = lease_.get();
  const uint64_t seq = ++stream_seq_;
  l.unlock();
  StartStream(Phase::kDecode, seq, current, std::move(req));
}

bool GenerateCall::PrepareMigration() {
  if (original_.n() > 1 || choice_ended_ || migrations_ >= kMaxMigrations) return false;
  const int64_t g = static_cast<int64_t>(generated_.size());
  if (g == 0 || g >= original_.max_tokens()) return false;
  ++migrations_;
  request_ = original_;
  for (int64_t t : generated_) request_.add_prompt_ids(t);
  request_.set_generated_prefix(static_cast<int32_t>(g));
  request_.set_max_tokens(static_cast<int32_t>(original_.max_tokens() - g));
  // The prompt's logprobs were delivered already.
  request_.set_prompt_logprobs(false);
  request_.set_prompt_top_logprobs(0);
  return true;
}

void GenerateCall::Cancel() {
  std::shared_ptr<GenerateStream> stream;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (cancelled_ || finished_) return;
    cancelled_ = true;
    stream = stream_;
    if (lease_) lease_->client().AbortAsync(request_.request_id());
    if (decode_lease_) decode_lease_->client().AbortAsync(request_.request_id());
  }
  // Outside the lock: gRPC may complete the stream inline.
  if (stream) stream->Cancel();
}

void GenerateCall::Finish(const Status& s) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (finished_) return;
    finished_ = true;
    lease_.reset();
    decode_lease_.reset();
  }
  observer_->OnComplete(s);
}

}  // namespace dsv3::gateway
