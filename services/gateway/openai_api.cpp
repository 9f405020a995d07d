#include "services/gateway/openai_api.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <random>
#include <sstream>

#include "services/gateway/chat_request.h"
#include "services/gateway/chat_response.h"
#include "services/gateway/completion_request.h"
#include "services/gateway/completion_response.h"
#include "services/gateway/generation_job.h"
#include "services/gateway/web_page.h"

namespace dsv3::gateway {

void ReplyError(const std::shared_ptr<ReplyChannel>& ch, const ApiError& e) {
  HttpReply r;
  r.status = e.http_status;
  r.body = e.ToJson();
  if (e.retry_after_s > 0) r.headers.emplace_back("Retry-After", std::to_string(e.retry_after_s));
  ch->Reply(std::move(r));
}

void ReplyJson(const std::shared_ptr<ReplyChannel>& ch, const Json& body, int status) {
  HttpReply r;
  r.status = status;
  r.body = DumpJson(body);
  ch->Reply(std::move(r));
}

std::string NewResponseId(const char* prefix) {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  thread_local std::mt19937_64 rng(std::random_device{}());
  std::string id = prefix;
  for (int i = 0; i < 24; ++i) id += kAlphabet[rng() % (sizeof(kAlphabet) - 1)];
  return id;
}

bool EndsWithThinkTag(const std::string& text) {
  size_t end = text.size();
  while (end > 0 && (text[end - 1] == '\n' || text[end - 1] == ' ' || text[end - 1] == '\r')) --end;
  constexpr std::string_view kTag = "<think>";
  return end >= kTag.size() && std::string_view(text).substr(end - kTag.size(), kTag.size()) == kTag;
}

OpenAiApi::OpenAiApi(const GatewayConfig& config, const BpeTokenizer& tokenizer, const ChatTemplate& chat,
                     Router& router, GatewayMetrics& metrics, ApiKeys keys)
    : config_(config),
      tokenizer_(tokenizer),
      chat_(chat),
      router_(router),
      metrics_(metrics),
      keys_(std::move(keys)),
      started_at_(std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
                      .count()) {
  // Probe the template once: does its generation prompt open a <think> block?
  const Json probe = Json::array({Json{{"role", "user"}, {"content", "hi"}}});
  if (auto r = chat_.Render(probe, true); r.ok()) template_thinks_ = EndsWithThinkTag(r->text);
  // tokenizer_config.json facts the template does not expose.
  std::ifstream in(config_.tokenizer_dir + "/tokenizer_config.json");
  if (in) {
    std::stringstream ss;
    ss << in.rdbuf();
    const Json cfg = Json::parse(ss.str(), nullptr, false);
    if (cfg.is_object()) {
      if (cfg.value("add_bos_token", false)) bos_id_ = tokenizer_.TokenToId(chat_.bos_token());
      if (auto m = cfg.find("model_max_length"); m != cfg.end() && m->is_number_integer()) {
        model_max_length_ = m->get<int64_t>();
      }
    }
  }
}

std::string OpenAiApi::RouteLabel(const std::string& path) {
  static const char* kRoutes[] = {"/", "/health", "/ready", "/metrics", "/v1/models", "/v1/chat/completions",
                                  "/v1/completions", "/tokenize", "/detokenize"};
  for (const char* r : kRoutes) {
    if (path == r) return r;
  }
  if (path.rfind("/v1/models/", 0) == 0) return "/v1/models/{id}";
  return "other";
}

RequestLimits OpenAiApi::Limits() const {
  RequestLimits l;
  l.vocab_size = static_cast<int64_t>(tokenizer_.id_space());
  if (auto info = router_.ModelInfo(); info && info->vocab_size() > 0) l.vocab_size = info->vocab_size();
  return l;
}

int64_t OpenAiApi::MaxModelLen() const {
  if (auto info = router_.ModelInfo(); info && info->max_context() > 0) return info->max_context();
  return model_max_length_;
}

Json OpenAiApi::ModelCard() const {
  Json m;
  m["id"] = config_.model_name;
  m["object"] = "model";
  m["created"] = started_at_;
  m["owned_by"] = "dsv3";
  m["root"] = config_.model_name;
  m["parent"] = nullptr;
  m["max_model_len"] = MaxModelLen();
  return m;
}

bool OpenAiApi::TryAcquireSlot() {
  int cur = inflight_->load();
  do {
    if (cur >= config_.max_inflight) return false;
  } while (!inflight_->compare_exchange_weak(cur, cur + 1));
  return true;
}

std::function<void()> OpenAiApi::ReleaseSlot() {
  return [counter = inflight_] { --*counter; };
}

std::vector<int32_t> OpenAiApi::EncodeText(const std::string& text, bool* ok) const {
  auto ids = tokenizer_.Encode(text);
  *ok = ids.ok();
  if (!ids.ok()) return {};
  if (bos_id_ && (ids->empty() || ids->front() != *bos_id_)) ids->insert(ids->begin(), *bos_id_);
  return std::move(*ids);
}

void OpenAiApi::Handle(const HttpRequest& req, const std::shared_ptr<ReplyChannel>& ch) {
  std::string path = req.path;
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const std::string route = RouteLabel(path);
  ch->SetRoute(route);
  if (route == "other") {
    ReplyError(ch, NotFoundError(StrCat("no route for ", req.path)));
    return;
  }
  const bool is_post = route == "/v1/chat/completions" || route == "/v1/completions" || route == "/tokenize" ||
                       route == "/detokenize";
  const std::string allowed = is_post ? "POST, OPTIONS" : "GET, HEAD, OPTIONS";
  if (req.method == "OPTIONS") {
    HttpReply r;
    r.status = 204;
    r.content_type.clear();
    r.headers.emplace_back("Access-Control-Allow-Methods", allowed);
    r.headers.emplace_back("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Request-Id");
    r.headers.emplace_back("Access-Control-Max-Age", "86400");
    ch->Reply(std::move(r));
    return;
  }
  // The page itself holds no secrets (the key is typed into it), so it is always open.
  const bool open = route == "/" || std::find(config_.open_paths.begin(), config_.open_paths.end(), path) !=
                                        config_.open_paths.end();
  if (!open && !keys_.Authorize(req.authorization)) {
    ReplyError(ch, Unauthorized(req.authorization.empty() ? "missing API key: send 'Authorization: Bearer <key>'"
                                                          : "invalid API key"));
    return;
  }
  const bool method_ok = is_post ? req.method == "POST" : (req.method == "GET" || req.method == "HEAD");
  if (!method_ok) {
    ApiError e = MethodNotAllowed(req.method, path);
    HttpReply r;
    r.status = 405;
    r.body = e.ToJson();
    r.headers.emplace_back("Allow", allowed);
    ch->Reply(std::move(r));
    return;
  }
  if (draining_ && (route == "/v1/chat/completions" || route == "/v1/completions")) {
    return ReplyError(ch, Unavailable("the gateway is shutting down; retry (another replica will answer)", 1));
  }
  if (route == "/v1/chat/completions") return Chat(req, ch);
  if (route == "/v1/completions") return Completions(req, ch);
  if (route == "/tokenize") return Tokenize(req, ch);
  if (route == "/detokenize") return Detokenize(req, ch);
  if (route == "/v1/models") return Models("", ch);
  if (route == "/v1/models/{id}") return Models(path.substr(std::string("/v1/models/").size()), ch);
  if (route == "/ready") return Ready(ch);
  if (route == "/health") return ReplyJson(ch, Json{{"status", "ok"}});
  HttpReply r;
  if (route == "/metrics") {
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = metrics_.Serialize();
  } else {
    r.content_type = "text/html; charset=utf-8";
    r.body = std::string(WebChatPage());
  }
  ch->Reply(std::move(r));
}

void OpenAiApi::Models(const std::string& id, const std::shared_ptr<ReplyChannel>& ch) {
  if (id.empty()) return ReplyJson(ch, Json{{"object", "list"}, {"data", Json::array({ModelCard()})}});
  if (id != config_.model_name) return ReplyError(ch, ModelNotFound(id));
  ReplyJson(ch, ModelCard());
}

void OpenAiApi::Ready(const std::shared_ptr<ReplyChannel>& ch) {
  const bool draining = draining_;
  const bool ready = !draining && router_.Ready();
  Json workers = Json::array();
  for (const auto& w : router_.Snapshot()) {
    Json j{{"address", w.address}, {"role", WorkerRoleName(w.role)}, {"up", w.up}};
    if (!w.last_error.empty()) j["error"] = w.last_error;
    if (w.load) {
      j["waiting"] = w.load->waiting();
      j["running"] = w.load->running();
      j["kv_usage"] = w.load->kv_usage();
    }
    workers.push_back(std::move(j));
  }
  HttpReply r;
  r.status = ready ? 200 : 503;
  // Why not ready, in words: a person reading /ready should not have to decode the list.
  std::string reason;
  if (draining) {
    reason = "the gateway is draining (shutting down)";
  } else if (!ready) {
    reason = router_.disaggregated() ? "no up prefill worker or no up decode worker" : "no up attention worker";
  }
  Json body{{"status", draining ? "draining" : ready ? "ready" : "not ready"}, {"workers", std::move(workers)}};
  if (!reason.empty()) body["reason"] = reason;
  r.body = DumpJson(body);
  if (!ready) r.headers.emplace_back("Retry-After", "1");
  ch->Reply(std::move(r));
}

// What chat and completion jobs share: ids, model, fingerprint, streaming and n.
void OpenAiApi::FillJobCommon(const char* id_prefix, const attn::WorkerInfo& info, const SamplingParams& params,
                              std::chrono::steady_clock::time_point arrived, JobSpec* spec) const {
  spec->header.id = NewResponseId(id_prefix);
  spec->header.model = config_.model_name;
  spec->header.system_fingerprint = info.config_fingerprint();
  spec->header.created =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  spec->request_id = spec->header.id;
  spec->stream = params.stream;
  spec->include_usage = params.stream && params.include_usage;
  spec->n = static_cast<int>(params.n);
  spec->arrived = arrived;
}

void OpenAiApi::Chat(const HttpRequest& req, const std::shared_ptr<ReplyChannel>& ch) {
  auto body = ParseJsonObject(req.body, config_.max_json_depth);
  if (!body.ok()) return ReplyError(ch, body.error());
  auto parsed = ParseChatRequest(*body, Limits());
  if (!parsed.ok()) return ReplyError(ch, parsed.error());
  ChatRequest& cr = *parsed;
  if (!cr.params.model.empty() && cr.params.model != config_.model_name) return ReplyError(ch, ModelNotFound(cr.params.model));
  const Json* tools = cr.tools ? &*cr.tools : nullptr;
  const Json* kwargs = cr.template_kwargs ? &*cr.template_kwargs : nullptr;
  auto rendered = chat_.Render(cr.messages, cr.add_generation_prompt, tools, kwargs);
  if (!rendered.ok()) return ReplyError(ch, BadRequest("messages", StrCat("cannot render the chat template: ", rendered.status().message())));
  auto ids = EncodePrompt(tokenizer_, *rendered);
  if (!ids.ok()) return ReplyError(ch, BadRequest("messages", std::string(ids.status().message())));
  if (ids->empty()) return ReplyError(ch, BadRequest("messages", "the prompt is empty"));
  const auto info = router_.ModelInfo();
  if (!info) return ReplyError(ch, Unavailable("no attention worker is available", 1));
  const int64_t max_context = info->max_context() > 0 ? info->max_context() : INT32_MAX;
  const int64_t prompt_len = static_cast<int64_t>(ids->size());
  if (prompt_len >= max_context) {
    ApiError e = BadRequest("messages", StrCat("the prompt has ", prompt_len, " tokens; this model's context is ",
                                               max_context, " tokens"));
    e.code = "context_length_exceeded";
    return ReplyError(ch, e);
  }
  int64_t max_tokens = max_context - prompt_len;
  if (cr.params.max_tokens) {
    if (*cr.params.max_tokens > max_context - prompt_len) {  // no overflow: both sides are bounded
      const char* param = body->contains("max_completion_tokens") && !(*body)["max_completion_tokens"].is_null()
                              ? "max_completion_tokens"
                              : "max_tokens";
      ApiError e = BadRequest(param, StrCat("prompt (", prompt_len, " tokens) + ", param, " (", *cr.params.max_tokens,
                                            ") exceeds this model's context of ", max_context, " tokens"));
      e.code = "context_length_exceeded";
      return ReplyError(ch, e);
    }
    max_tokens = *cr.params.max_tokens;
  }
  if (!TryAcquireSlot()) return ReplyError(ch, TooManyRequests("too many requests in flight; retry shortly", 1));

  JobSpec spec;
  FillJobCommon("chatcmpl-", *info, cr.params, req.arrived, &spec);
  const bool starts_thinking = EndsWithThinkTag(rendered->text);
  spec.choice_options.stop = cr.params.stop;
  spec.choice_options.reasoning = config_.reasoning_parser == "deepseek-r1" ||
                                  (config_.reasoning_parser == "auto" && (starts_thinking || template_thinks_));
  spec.choice_options.starts_in_reasoning = spec.choice_options.reasoning && starts_thinking;
  spec.choice_options.tool_calls = cr.parse_tool_calls;
  spec.choice_options.logprobs = cr.logprobs;
  JobSpec::Prompt p;
  p.ids = std::move(*ids);
  for (int32_t id : p.ids) p.request.add_prompt_ids(id);
  ToGenerateRequest(cr.params, max_tokens, &p.request);
  if (cr.logprobs) {
    p.request.set_logprobs(1);
    p.request.set_top_logprobs(static_cast<int32_t>(cr.top_logprobs));
  }
  spec.prompts.push_back(std::move(p));
  auto format = std::make_unique<ChatResponseFormat>(cr.logprobs, spec.choice_options.reasoning);
  auto job = std::make_shared<GenerationJob>(std::move(spec), tokenizer_, router_, &metrics_, std::move(format), ch,
                                             ReleaseSlot());
  job->Start();
}

void OpenAiApi::Completions(const HttpRequest& req, const std::shared_ptr<ReplyChannel>& ch) {
  auto body = ParseJsonObject(req.body, config_.max_json_depth);
  if (!body.ok()) return ReplyError(ch, body.error());
  auto parsed = ParseCompletionRequest(*body, Limits());
  if (!parsed.ok()) return ReplyError(ch, parsed.error());
  CompletionRequest& cr = *parsed;
  if (!cr.params.model.empty() && cr.params.model != config_.model_name) return ReplyError(ch, ModelNotFound(cr.params.model));
  const auto info = router_.ModelInfo();
  if (!info) return ReplyError(ch, Unavailable("no attention worker is available", 1));
  const int64_t max_context = info->max_context() > 0 ? info->max_context() : INT32_MAX;

  JobSpec spec;
  std::vector<std::string> echo_text;
  std::vector<std::vector<std::string>> echo_tokens;
  for (auto& in : cr.prompts) {
    JobSpec::Prompt p;
    if (in.text) {
      bool ok = false;
      p.ids = EncodeText(*in.text, &ok);
      if (!ok) return ReplyError(ch, BadRequest("prompt", "the prompt cannot be tokenized"));
    } else {
      p.ids = std::move(in.ids);
    }
    const int64_t prompt_len = static_cast<int64_t>(p.ids.size());
    if (prompt_len >= max_context) {
      ApiError e = BadRequest("prompt", StrCat("the prompt has ", prompt_len, " tokens; this model's context is ",
                                               max_context, " tokens"));
      e.code = "context_length_exceeded";
      return ReplyError(ch, e);
    }
    int64_t max_tokens = max_context - prompt_len;
    if (cr.params.max_tokens) {
      if (*cr.params.max_tokens > max_context - prompt_len) {  // no overflow: both sides are bounded
        ApiError e = BadRequest("max_tokens", StrCat("prompt (", prompt_len, " tokens) + max_tokens (", *cr.params.max_tokens,
                                                     ") exceeds this model's context of ", max_context, " tokens"));
        e.code = "context_length_exceeded";
        return ReplyError(ch, e);
      }
      max_tokens = *cr.params.max_tokens;
    }
    if (cr.echo) {
      if (in.text) {
        echo_text.push_back(*in.text);
      } else {
        auto text = tokenizer_.Decode(p.ids);
        echo_text.push_back(text.ok() ? *text : "");
      }
      std::vector<std::string> toks;
      for (int32_t id : p.ids) toks.push_back(TokenText(tokenizer_, id));
      echo_tokens.push_back(std::move(toks));
    }
    for (int32_t id : p.ids) p.request.add_prompt_ids(id);
    ToGenerateRequest(cr.params, max_tokens, &p.request);
    if (cr.logprobs >= 0) {
      p.request.set_logprobs(1);
      p.request.set_top_logprobs(static_cast<int32_t>(cr.logprobs));
      if (cr.echo) {  // the echoed prompt tokens get their logprobs too
        p.request.set_prompt_logprobs(true);
        p.request.set_prompt_top_logprobs(static_cast<int32_t>(cr.logprobs));
      }
    }
    spec.prompts.push_back(std::move(p));
  }
  if (!TryAcquireSlot()) return ReplyError(ch, TooManyRequests("too many requests in flight; retry shortly", 1));
  FillJobCommon("cmpl-", *info, cr.params, req.arrived, &spec);
  spec.choice_options.stop = cr.params.stop;
  spec.choice_options.logprobs = cr.logprobs >= 0;
  auto format = std::make_unique<CompletionResponseFormat>(spec.n, std::move(echo_text), std::move(echo_tokens),
                                                           cr.logprobs);
  auto job = std::make_shared<GenerationJob>(std::move(spec), tokenizer_, router_, &metrics_, std::move(format), ch,
                                             ReleaseSlot());
  job->Start();
}

void OpenAiApi::Tokenize(const HttpRequest& req, const std::shared_ptr<ReplyChannel>& ch) {
  auto body = ParseJsonObject(req.body, config_.max_json_depth);
  if (!body.ok()) return ReplyError(ch, body.error());
  std::string model;
  if (auto e = ReadString(*body, "model", &model)) return ReplyError(ch, *e);
  if (!model.empty() && model != config_.model_name) return ReplyError(ch, ModelNotFound(model));
  std::vector<int32_t> ids;
  if (body->contains("messages")) {
    auto cr = ParseChatRequest(*body, Limits());
    if (!cr.ok()) return ReplyError(ch, cr.error());
    const Json* tools = cr->tools ? &*cr->tools : nullptr;
    auto rendered = chat_.Render(cr->messages, cr->add_generation_prompt, tools,
                                 cr->template_kwargs ? &*cr->template_kwargs : nullptr);
    if (!rendered.ok()) return ReplyError(ch, BadRequest("messages", std::string(rendered.status().message())));
    auto enc = EncodePrompt(tokenizer_, *rendered);
    if (!enc.ok()) return ReplyError(ch, BadRequest("messages", std::string(enc.status().message())));
    ids = std::move(*enc);
  } else {
    std::string prompt;
    if (auto e = ReadString(*body, "prompt", &prompt)) return ReplyError(ch, *e);
    if (!body->contains("prompt")) return ReplyError(ch, BadRequest("prompt", "'prompt' or 'messages' is required"));
    bool add_special = true;
    if (auto e = ReadBool(*body, "add_special_tokens", &add_special)) return ReplyError(ch, *e);
    if (add_special) {
      bool ok = false;
      ids = EncodeText(prompt, &ok);
      if (!ok) return ReplyError(ch, BadRequest("prompt", "the prompt cannot be tokenized"));
    } else {
      auto enc = tokenizer_.Encode(prompt);
      if (!enc.ok()) return ReplyError(ch, BadRequest("prompt", std::string(enc.status().message())));
      ids = std::move(*enc);
    }
  }
  ReplyJson(ch, Json{{"tokens", ids}, {"count", ids.size()}, {"max_model_len", MaxModelLen()}});
}

void OpenAiApi::Detokenize(const HttpRequest& req, const std::shared_ptr<ReplyChannel>& ch) {
  auto body = ParseJsonObject(req.body, config_.max_json_depth);
  if (!body.ok()) return ReplyError(ch, body.error());
  std::string model;
  if (auto e = ReadString(*body, "model", &model)) return ReplyError(ch, *e);
  if (!model.empty() && model != config_.model_name) return ReplyError(ch, ModelNotFound(model));
  auto it = body->find("tokens");
  if (it == body->end() || !it->is_array()) return ReplyError(ch, BadRequest("tokens", "'tokens' must be a list of token ids"));
  std::vector<int32_t> ids;
  for (const auto& v : *it) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= static_cast<int64_t>(tokenizer_.id_space())) {
      return ReplyError(ch, BadRequest("tokens", "'tokens' must be token ids known to the tokenizer"));
    }
    ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
  }
  auto text = tokenizer_.Decode(ids);
  if (!text.ok()) return ReplyError(ch, BadRequest("tokens", std::string(text.status().message())));
  ReplyJson(ch, Json{{"prompt", *text}});
}

}  // namespace dsv3::gateway
