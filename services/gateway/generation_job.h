// GenerationJob: one accepted /v1/chat/completions or /v1/completions request from the
// moment it is queued until its last byte is handed to the connection.
//
// Data flow: GenerateCall per prompt (gRPC threads) -> OnResponse -> ChoiceOutput per
// choice (detokenize, stop strings, reasoning/tool parsing) -> ResponseFormat (chat or
// completion JSON) -> ReplyChannel (SSE chunks as they come, or one JSON body at the end).
//
// Ownership: the job keeps its calls, the calls keep their observers, the observers keep
// the job; the cycle is cut when the last call completes (Finalize). The client going away
// cancels every call; a stop string that ends every choice of a prompt cancels that
// prompt's call so the worker frees the sequence at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/tokenizer/bpe_tokenizer.h"
#include "services/gateway/choice_output.h"
#include "services/gateway/generate_call.h"
#include "services/gateway/http_exchange.h"
#include "services/gateway/json_body.h"

namespace dsv3::gateway {

class GatewayMetrics;

struct JobHeader {
  std::string id;  // chatcmpl-... / cmpl-...
  std::string model;
  std::string system_fingerprint;
  int64_t created = 0;
};

// What one choice produced so far (kept for non-streamed answers).
struct ChoiceResult {
  std::string content;
  std::string reasoning;
  std::vector<ParsedToolCall> calls;
  std::vector<TokenLogprob> logprobs;
  std::string finish_reason;
};

// The JSON shapes of one endpoint.
class ResponseFormat {
 public:
  virtual ~ResponseFormat() = default;
  // Chunks sent when the stream opens (chat: the assistant role delta of every choice).
  virtual std::vector<Json> StreamStart(const JobHeader& h, int num_choices) = 0;
  // The chunk for one choice's delta; null when there is nothing to send.
  virtual Json StreamDelta(const JobHeader& h, int index, const ChoiceOutput::Delta& d,
                           const std::string& finish_reason) = 0;
  // The usage-only final chunk (stream_options.include_usage).
  virtual Json UsageChunk(const JobHeader& h, const Json& usage) = 0;
  // The whole non-streamed response.
  virtual Json Final(const JobHeader& h, const std::vector<ChoiceResult>& choices, const Json& usage) = 0;
  // Prompt logprobs of prompt `prompt` for its positions [start, start + lps.size()); they
  // arrive before or with that prompt's first token (again, same values, after a retry).
  virtual void PromptLogprobs(size_t /*prompt*/, int64_t /*start*/, std::vector<TokenLogprob> /*lps*/) {}
  // Chunks owed before choice `index`'s first delta (completions: the echo, once its prompt
  // logprobs are in).
  virtual std::vector<Json> StreamBeforeDelta(const JobHeader& /*h*/, int /*index*/) { return {}; }
};

struct JobSpec {
  JobHeader header;
  std::string request_id;  // x-request-id; also the workers' request id (suffixed per prompt)
  bool stream = false;
  bool include_usage = false;
  int n = 1;
  ChoiceOutputOptions choice_options;
  struct Prompt {
    attn::GenerateRequest request;  // complete except request_id
    std::vector<int32_t> ids;
  };
  std::vector<Prompt> prompts;
  std::chrono::steady_clock::time_point arrived;
};

class GenerationJob : public std::enable_shared_from_this<GenerationJob> {
 public:
  GenerationJob(JobSpec spec, const BpeTokenizer& tokenizer, Router& router, GatewayMetrics* metrics,
                std::unique_ptr<ResponseFormat> format, std::shared_ptr<ReplyChannel> channel,
                std::function<void()> on_end);
  ~GenerationJob();
  void Start();
  void Cancel();  // the client went away

 private:
  class PromptObserver;
  struct PromptState {
    std::shared_ptr<GenerateCall> call;
    bool done = false;
    bool cancelled_by_us = false;
    int cached_tokens = 0;
  };
  void OnResponse(size_t prompt, const attn::GenerateResponse& r);
  void OnComplete(size_t prompt, const Status& s);
  void EmitDelta(int index, const ChoiceOutput::Delta& d, const std::string& finish);  // needs mu_
  void BeginStreamIfNeeded();                                                          // needs mu_
  void SendOwedChunks(int index);                                                      // needs mu_
  Json Usage() const;                                                                  // needs mu_
  void Finalize(std::unique_lock<std::mutex>& l);
  void Fail(const Status& s, std::unique_lock<std::mutex>& l);

  JobSpec spec_;
  const BpeTokenizer& tokenizer_;
  Router& router_;
  GatewayMetrics* metrics_;
  std::unique_ptr<ResponseFormat> format_;
  std::shared_ptr<ReplyChannel> channel_;
  std::function<void()> on_end_;

  std::mutex mu_;
  std::vector<PromptState> prompts_;
  std::vector<ChoiceOutput> choices_;
  std::vector<ChoiceResult> results_;
  std::vector<std::chrono::steady_clock::time_point> last_token_at_;
  bool any_token_ = false;
  bool stream_open_ = false;
  bool ended_ = false;   // the answer (or the error) went out, or the client is gone
  bool client_gone_ = false;
  int64_t generated_tokens_ = 0;
};

}  // namespace dsv3::gateway
