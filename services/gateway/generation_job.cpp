#include "services/gateway/generation_job.h"

#include "services/gateway/gateway_metrics.h"
#include "services/gateway/openai_errors.h"
#include "services/gateway/sse_writer.h"

namespace dsv3::gateway {

class GenerationJob::PromptObserver : public GenerateObserver {
 public:
  PromptObserver(std::shared_ptr<GenerationJob> job, size_t prompt) : job_(std::move(job)), prompt_(prompt) {}
  void OnResponse(const attn::GenerateResponse& r) override { job_->OnResponse(prompt_, r); }
  void OnComplete(const Status& s) override {
    // Drop the job reference after the last callback: this cuts the ownership cycle.
    std::shared_ptr<GenerationJob> job = std::move(job_);
    job->OnComplete(prompt_, s);
  }

 private:
  std::shared_ptr<GenerationJob> job_;
  size_t prompt_;
};

GenerationJob::GenerationJob(JobSpec spec, const BpeTokenizer& tokenizer, Router& router, GatewayMetrics* metrics,
                             std::unique_ptr<ResponseFormat> format, std::shared_ptr<ReplyChannel> channel,
                             std::function<void()> on_end)
    : spec_(std::move(spec)),
      tokenizer_(tokenizer),
      router_(router),
      metrics_(metrics),
      format_(std::move(format)),
      channel_(std::move(channel)),
      on_end_(std::move(on_end)) {
  const size_t num_choices = spec_.prompts.size() * static_cast<size_t>(spec_.n);
  choices_.reserve(num_choices);
  for (size_t i = 0; i < num_choices; ++i) choices_.emplace_back(tokenizer_, spec_.choice_options);
  results_.resize(num_choices);
  last_token_at_.resize(num_choices);
  prompts_.resize(spec_.prompts.size());
  if (metrics_) metrics_->in_flight().Increment();
}

GenerationJob::~GenerationJob() {
  if (metrics_) metrics_->in_flight().Decrement();
  if (on_end_) on_end_();
}

void GenerationJob::Start() {
  auto self = shared_from_this();
  channel_->OnClientGone([weak = std::weak_ptr<GenerationJob>(self)] {
    if (auto job = weak.lock()) job->Cancel();
  });
  int64_t prompt_tokens = 0;
  std::vector<std::shared_ptr<GenerateCall>> calls;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (size_t p = 0; p < spec_.prompts.size(); ++p) {
      auto& sp = spec_.prompts[p];
      attn::GenerateRequest req = sp.request;
      req.set_request_id(spec_.prompts.size() == 1 ? spec_.request_id : StrCat(spec_.request_id, "-", p));
      prompt_tokens += static_cast<int64_t>(sp.ids.size());
      prompts_[p].call = std::make_shared<GenerateCall>(router_, std::move(req), sp.ids,
                                                        std::make_shared<PromptObserver>(self, p), metrics_);
      calls.push_back(prompts_[p].call);
    }
  }
  if (metrics_) metrics_->AddPromptTokens(static_cast<double>(prompt_tokens));
  for (auto& c : calls) c->Start();
}

void GenerationJob::Cancel() {
  std::vector<std::shared_ptr<GenerateCall>> calls;
  {
    std::lock_guard<std::mutex> l(mu_);
    client_gone_ = true;
    ended_ = true;
    for (auto& p : prompts_) {
      if (!p.done && p.call) {
        p.cancelled_by_us = true;
        calls.push_back(p.call);
      }
    }
  }
  for (auto& c : calls) c->Cancel();  // outside the lock: completion may run inline
}

void GenerationJob::BeginStreamIfNeeded() {
  if (!spec_.stream || stream_open_ || ended_) return;
  stream_open_ = true;
  channel_->BeginSse();
  for (auto& chunk : format_->StreamStart(spec_.header, static_cast<int>(choices_.size()))) {
    if (spec_.include_usage) chunk["usage"] = nullptr;
    channel_->SendSse(SseEvent(DumpJson(chunk)));
  }
}

void GenerationJob::SendOwedChunks(int index) {
  for (auto& chunk : format_->StreamBeforeDelta(spec_.header, index)) {
    if (spec_.include_usage) chunk["usage"] = nullptr;
    channel_->SendSse(SseEvent(DumpJson(chunk)));
  }
}

void GenerationJob::EmitDelta(int index, const ChoiceOutput::Delta& d, const std::string& finish) {
  ChoiceResult& r = results_[static_cast<size_t>(index)];
  if (!spec_.stream) {
    r.content += d.content;
    r.reasoning += d.reasoning;
    for (const auto& c : d.calls) r.calls.push_back(c);
    for (const auto& lp : d.logprobs) r.logprobs.push_back(lp);
    if (!finish.empty()) r.finish_reason = finish;
    return;
  }
  if (!finish.empty()) r.finish_reason = finish;
  if (ended_) return;
  BeginStreamIfNeeded();
  SendOwedChunks(index);
  Json chunk = format_->StreamDelta(spec_.header, index, d, finish);
  if (chunk.is_null()) return;
  if (spec_.include_usage) chunk["usage"] = nullptr;
  channel_->SendSse(SseEvent(DumpJson(chunk)));
}

void GenerationJob::OnResponse(size_t prompt, const attn::GenerateResponse& r) {
  std::vector<std::shared_ptr<GenerateCall>> to_cancel;
  {
    std::lock_guard<std::mutex> l(mu_);
    PromptState& ps = prompts_[prompt];
    if (r.has_usage() && r.usage().cached_prompt_tokens() > 0) ps.cached_tokens = r.usage().cached_prompt_tokens();
    if (r.prompt_logprobs_size() > 0) {
      const auto& ids = spec_.prompts[prompt].ids;
      std::vector<TokenLogprob> lps;
      for (int k = 0; k < r.prompt_logprobs_size(); ++k) {
        const int64_t pos = r.prompt_logprobs_start() + k;
        if (pos <= 0 || pos >= static_cast<int64_t>(ids.size())) break;  // a worker bug must not crash us
        lps.push_back(MakeTokenLogprob(tokenizer_, ids[static_cast<size_t>(pos)], &r.prompt_logprobs(k)));
      }
      format_->PromptLogprobs(prompt, r.prompt_logprobs_start(), std::move(lps));
    }
    const auto now = std::chrono::steady_clock::now();
    for (const auto& cd : r.choices()) {
      if (cd.index() < 0 || cd.index() >= spec_.n) continue;  // a worker bug must not crash us
      const size_t idx = prompt * static_cast<size_t>(spec_.n) + static_cast<size_t>(cd.index());
      ChoiceOutput& choice = choices_[idx];
      if (choice.finished()) continue;
      if (cd.token_ids_size() > 0) {
        generated_tokens_ += cd.token_ids_size();
        if (metrics_) {
          metrics_->AddGenerationTokens(cd.token_ids_size());
          if (!any_token_) {
            metrics_->ObserveTtft(std::chrono::duration<double>(now - spec_.arrived).count());
          } else if (last_token_at_[idx] != std::chrono::steady_clock::time_point()) {
            metrics_->ObserveInterToken(std::chrono::duration<double>(now - last_token_at_[idx]).count() /
                                        cd.token_ids_size());
          }
        }
        any_token_ = true;
        last_token_at_[idx] = now;
      }
      ChoiceOutput::Delta d = choice.Push(cd);
      EmitDelta(static_cast<int>(idx), d, choice.finished() ? choice.finish_reason() : "");
    }
    // A stop string ended every choice of this prompt: the rest of its generation is waste.
    if (!ps.done && !ps.cancelled_by_us) {
      bool all_finished = true, any_by_string = false;
      for (int i = 0; i < spec_.n; ++i) {
        const ChoiceOutput& c = choices_[prompt * static_cast<size_t>(spec_.n) + static_cast<size_t>(i)];
        all_finished &= c.finished();
        any_by_string |= c.stopped_by_string();
      }
      if (all_finished && any_by_string) {
        ps.cancelled_by_us = true;
        to_cancel.push_back(ps.call);
      }
    }
  }
  for (auto& c : to_cancel) c->Cancel();
}

void GenerationJob::OnComplete(size_t prompt, const Status& s) {
  std::unique_lock<std::mutex> l(mu_);
  PromptState& ps = prompts_[prompt];
  ps.done = true;
  if (client_gone_) {
    bool all_done = true;
    for (const auto& p : prompts_) all_done &= p.done;
    if (all_done) Finalize(l);
    return;
  }
  if (!s.ok() && !(ps.cancelled_by_us && s.code() == absl::StatusCode::kCancelled)) {
    Fail(s, l);
    return;
  }
  // Choices the worker ended without a finish reason (or that we cancelled) end here.
  for (int i = 0; i < spec_.n; ++i) {
    const size_t idx = prompt * static_cast<size_t>(spec_.n) + static_cast<size_t>(i);
    ChoiceOutput& c = choices_[idx];
    if (c.finished()) continue;
    ChoiceOutput::Delta d = c.Finish("stop");
    EmitDelta(static_cast<int>(idx), d, c.finish_reason());
  }
  bool all_done = true;
  for (const auto& p : prompts_) all_done &= p.done;
  if (all_done) Finalize(l);
}

Json GenerationJob::Usage() const {
  int64_t prompt_tokens = 0, completion = 0, cached = 0;
  for (const auto& p : spec_.prompts) prompt_tokens += static_cast<int64_t>(p.ids.size());
  for (const auto& c : choices_) completion += c.completion_tokens();
  for (const auto& p : prompts_) cached += p.cached_tokens;
  Json u;
  u["prompt_tokens"] = prompt_tokens;
  u["completion_tokens"] = completion;
  u["total_tokens"] = prompt_tokens + completion;
  u["prompt_tokens_details"] = Json{{"cached_tokens", cached}};
  return u;
}

void GenerationJob::Fail(const Status& s, std::unique_lock<std::mutex>& l) {
  std::vector<std::shared_ptr<GenerateCall>> others;
  if (!ended_) {
    ApiError e = FromStatus(s, "");
    if (e.http_status == 500) e.message = StrCat("generation failed: ", s.message());
    if (stream_open_) {
      // Mid-stream: an error event and no [DONE], so clients see the stream as failed.
      channel_->SendSse(SseEvent(e.ToJson()));
      channel_->EndSse();
    } else {
      HttpReply reply;
      reply.status = e.http_status;
      reply.body = e.ToJson();
      if (e.retry_after_s > 0) reply.headers.emplace_back("Retry-After", std::to_string(e.retry_after_s));
      channel_->Reply(std::move(reply));
    }
    ended_ = true;
  }
  for (auto& p : prompts_) {
    if (!p.done && !p.cancelled_by_us && p.call) {
      p.cancelled_by_us = true;
      others.push_back(p.call);
    }
  }
  bool all_done = true;
  for (const auto& p : prompts_) all_done &= p.done;
  if (all_done) {
    Finalize(l);
    return;
  }
  l.unlock();
  for (auto& c : others) c->Cancel();
}

void GenerationJob::Finalize(std::unique_lock<std::mutex>& l) {
  if (metrics_ && !client_gone_) {
    metrics_->ObserveE2e(std::chrono::duration<double>(std::chrono::steady_clock::now() - spec_.arrived).count());
  }
  if (!ended_) {
    ended_ = true;
    const Json usage = Usage();
    if (spec_.stream) {
      if (!stream_open_) {
        stream_open_ = true;
        channel_->BeginSse();
        for (auto& chunk : format_->StreamStart(spec_.header, static_cast<int>(choices_.size()))) {
          if (spec_.include_usage) chunk["usage"] = nullptr;
          channel_->SendSse(SseEvent(DumpJson(chunk)));
        }
        for (int i = 0; i < static_cast<int>(choices_.size()); ++i) SendOwedChunks(i);
      }
      if (spec_.include_usage) channel_->SendSse(SseEvent(DumpJson(format_->UsageChunk(spec_.header, usage))));
      channel_->SendSse(SseDone());
      channel_->EndSse();
    } else {
      HttpReply reply;
      reply.body = DumpJson(format_->Final(spec_.header, results_, usage));
      channel_->Reply(std::move(reply));
    }
  }
  // Cut the job <-> call cycle; the calls are finished.
  std::vector<PromptState> prompts = std::move(prompts_);
  prompts_.clear();
  l.unlock();
}

}  // namespace dsv3::gateway
