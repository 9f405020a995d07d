// OpenAiApi: routes an HttpRequest to its handler and answers through the ReplyChannel.
//
//   GET  /                      web chat page           GET  /health   liveness
//   GET  /ready                 workers of each role up GET  /metrics  Prometheus text
//   GET  /v1/models[/{id}]      the served model
//   POST /v1/chat/completions   chat (SSE when "stream": true)
//   POST /v1/completions        legacy completions
//   POST /tokenize, /detokenize vLLM's shapes
//
// Order of checks for every request: route (404) -> CORS preflight -> auth (401, except
// open paths) -> method (405) -> body parsing and limits (400) -> capacity (429/503) ->
// work. Nothing is sent to a worker before every check passed.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "common/chat_template/chat_template.h"
#include "common/tokenizer/bpe_tokenizer.h"
#include "services/gateway/api_keys.h"
#include "services/gateway/gateway_config.h"
#include "services/gateway/gateway_metrics.h"
#include "services/gateway/generation_job.h"
#include "services/gateway/http_exchange.h"
#include "services/gateway/json_body.h"
#include "services/gateway/router.h"
#include "services/gateway/sampling_params.h"

namespace dsv3::gateway {

class OpenAiApi {
 public:
  OpenAiApi(const GatewayConfig& config, const BpeTokenizer& tokenizer, const ChatTemplate& chat, Router& router,
            GatewayMetrics& metrics, ApiKeys keys);

  void Handle(const HttpRequest& req, const std::shared_ptr<ReplyChannel>& ch);
  // SIGTERM: /ready answers 503 "draining" so load balancers stop sending; new generation
  // requests answer 503 with Retry-After; requests already running finish.
  void BeginDrain() { draining_ = true; }
  // The metrics label for a path ("other" for unknown paths: bounded label values).
  static std::string RouteLabel(const std::string& path);

 private:
  void FillJobCommon(const char* id_prefix, const attn::WorkerInfo& info, const SamplingParams& params,
                     std::chrono::steady_clock::time_point arrived, JobSpec* spec) const;
  void Chat(const HttpRequest& req, const std::shared_ptr<ReplyChannel>& ch);
  void Completions(const HttpRequest& req, const std::shared_ptr<ReplyChannel>& ch);
  void Tokenize(const HttpRequest& req, const std::shared_ptr<ReplyChannel>& ch);
  void Detokenize(const HttpRequest& req, const std::shared_ptr<ReplyChannel>& ch);
  void Models(const std::string& id, const std::shared_ptr<ReplyChannel>& ch);
  void Ready(const std::shared_ptr<ReplyChannel>& ch);

  RequestLimits Limits() const;
  Json ModelCard() const;
  int64_t MaxModelLen() const;
  // Takes an in-flight slot; false when --max-inflight is reached.
  bool TryAcquireSlot();
  std::function<void()> ReleaseSlot();
  std::vector<int32_t> EncodeText(const std::string& text, bool* ok) const;

  const GatewayConfig& config_;
  const BpeTokenizer& tokenizer_;
  const ChatTemplate& chat_;
  Router& router_;
  GatewayMetrics& metrics_;
  ApiKeys keys_;
  int64_t started_at_;
  bool template_thinks_ = false;  // the generation prompt ends with <think> (R1)
  std::optional<int32_t> bos_id_;  // prepended to text prompts when add_bos_token
  int64_t model_max_length_ = 0;   // tokenizer_config's, used before any worker answered
  std::shared_ptr<std::atomic<int>> inflight_ = std::make_shared<std::atomic<int>>(0);
  std::atomic<bool> draining_{false};
};

void ReplyError(const std::shared_ptr<ReplyChannel>& ch, const ApiError& e);
void ReplyJson(const std::shared_ptr<ReplyChannel>& ch, const Json& body, int status = 200);
// A random id with the given prefix ("chatcmpl-", "cmpl-").
std::string NewResponseId(const char* prefix);
// True when `text` ends with "<think>" (optionally followed by whitespace).
bool EndsWithThinkTag(const std::string& text);

}  // namespace dsv3::gateway
