#include "services/attention-worker/generate_proto.h"

namespace dsv3 {

namespace {
constexpr int32_t kWireMaxTopLogprobs = 20;

void TokenToProto(const SampledToken& t, attention_pb::TokenLogprobs* out) {
  out->set_logprob(t.logprob);
  for (const auto& tl : t.top) {
    auto* e = out->add_top();
    e->set_id(tl.id);
    e->set_logprob(static_cast<float>(tl.logprob));
  }
}

SampledToken TokenFromProto(int64_t id, const attention_pb::TokenLogprobs& p) {
  SampledToken t;
  t.id = id;
  t.logprob = p.logprob();
  for (const auto& e : p.top()) t.top.push_back({e.id(), e.logprob()});
  return t;
}
}  // namespace

StatusOr<GenerateParams> ParamsFromProto(const attention_pb::GenerateRequest& r) {
  GenerateParams p;
  p.request_id = r.request_id();
  p.prompt.assign(r.prompt_ids().begin(), r.prompt_ids().end());
  const auto& s = r.sampling();
  p.sampling.temperature = s.temperature();
  p.sampling.top_p = s.top_p() == 0.0f ? 1.0f : s.top_p();
  p.sampling.top_k = s.top_k();
  p.sampling.min_p = s.min_p();
  if (s.has_seed()) p.sampling.seed = s.seed();
  p.sampling.presence_penalty = s.presence_penalty();
  p.sampling.frequency_penalty = s.frequency_penalty();
  p.sampling.repetition_penalty = s.repetition_penalty() == 0.0f ? 1.0f : s.repetition_penalty();
  for (const auto& [id, bias] : s.logit_bias()) p.sampling.logit_bias.emplace_back(id, bias);
  p.sampling.json_object = s.json_object();
  std::sort(p.sampling.logit_bias.begin(), p.sampling.logit_bias.end());
  if (r.top_logprobs() < 0 || r.top_logprobs() > kWireMaxTopLogprobs) {
    return InvalidArgument("top_logprobs", StrCat("top_logprobs must be in [0, 20], got ", r.top_logprobs()));
  }
  if (r.logprobs() < 0) return InvalidArgument("logprobs", "logprobs must not be negative");
  p.sampling.logprobs = r.logprobs();
  p.sampling.top_logprobs = r.top_logprobs();
  p.max_tokens = r.max_tokens();
  p.n = r.n() == 0 ? 1 : r.n();
  p.stop_token_ids.assign(r.stop_token_ids().begin(), r.stop_token_ids().end());
  p.ignore_eos = r.ignore_eos();
  p.prefill_only = r.prefill_only();
  p.generated_prefix = r.generated_prefix();
  if (r.prompt_logprobs()) {
    if (r.prompt_top_logprobs() < 0 || r.prompt_top_logprobs() > kWireMaxTopLogprobs) {
      return InvalidArgument("prompt_top_logprobs",
                             StrCat("prompt_top_logprobs must be in [0, 20], got ", r.prompt_top_logprobs()));
    }
    p.prompt_logprobs = r.prompt_top_logprobs();
  }
  return p;
}

attention_pb::GenerateRequest ParamsToProto(const GenerateParams& p) {
  attention_pb::GenerateRequest r;
  r.set_request_id(p.request_id);
  for (int64_t t : p.prompt) r.add_prompt_ids(t);
  r.set_generated_prefix(p.generated_prefix);
  auto* s = r.mutable_sampling();
  s->set_temperature(p.sampling.temperature);
  s->set_top_p(p.sampling.top_p);
  s->set_top_k(static_cast<int32_t>(p.sampling.top_k));
  s->set_min_p(p.sampling.min_p);
  if (p.sampling.seed) {
    s->set_has_seed(true);
    s->set_seed(*p.sampling.seed);
  }
  s->set_presence_penalty(p.sampling.presence_penalty);
  s->set_frequency_penalty(p.sampling.frequency_penalty);
  s->set_repetition_penalty(p.sampling.repetition_penalty);
  for (const auto& [id, bias] : p.sampling.logit_bias) (*s->mutable_logit_bias())[id] = bias;
  s->set_json_object(p.sampling.json_object);
  r.set_logprobs(p.sampling.logprobs);
  r.set_top_logprobs(p.sampling.top_logprobs);
  r.set_max_tokens(p.max_tokens);
  r.set_n(p.n);
  for (int64_t t : p.stop_token_ids) r.add_stop_token_ids(t);
  r.set_ignore_eos(p.ignore_eos);
  r.set_prefill_only(p.prefill_only);
  if (p.prompt_logprobs >= 0) {
    r.set_prompt_logprobs(true);
    r.set_prompt_top_logprobs(p.prompt_logprobs);
  }
  return r;
}

attention_pb::FinishReason FinishToProto(FinishReason r) {
  switch (r) {
    case FinishReason::kNone: return attention_pb::FINISH_NONE;
    case FinishReason::kStop: return attention_pb::FINISH_STOP;
    case FinishReason::kLength: return attention_pb::FINISH_LENGTH;
    case FinishReason::kAbort: return attention_pb::FINISH_ABORT;
    case FinishReason::kPrefillDone: return attention_pb::FINISH_PREFILL_DONE;
    case FinishReason::kError: return attention_pb::FINISH_ABORT;
  }
  return attention_pb::FINISH_NONE;
}

attention_pb::GenerateResponse OutputToProto(const RequestOutput& o) {
  attention_pb::GenerateResponse r;
  for (const auto& c : o.choices) {
    auto* d = r.add_choices();
    d->set_index(c.index);
    for (int64_t t : c.tokens) d->add_token_ids(t);
    for (const auto& lp : c.logprobs) TokenToProto(lp, d->add_logprobs());
    d->set_finish_reason(FinishToProto(c.finish));
  }
  if (o.final) {
    auto* u = r.mutable_usage();
    u->set_prompt_tokens(static_cast<int32_t>(o.prompt_tokens));
    u->set_completion_tokens(static_cast<int32_t>(o.completion_tokens));
    u->set_cached_prompt_tokens(static_cast<int32_t>(o.cached_prompt_tokens));
  }
  if (o.queue_seconds >= 0) r.set_queue_seconds(o.queue_seconds);
  if (!o.prompt_logprobs.empty()) {
    r.set_prompt_logprobs_start(o.prompt_logprobs_start);
    for (const auto& lp : o.prompt_logprobs) TokenToProto(lp, r.add_prompt_logprobs());
  }
  return r;
}

attention_pb::KvTransferHeader ExportHeader(const KvExport& ex, const std::string& fingerprint) {
  attention_pb::KvTransferHeader h;
  h.set_request_id(ex.params.request_id);
  *h.mutable_request() = ParamsToProto(ex.params);
  for (int64_t t : ex.params.prompt) h.add_prompt_ids(t);
  for (size_t c = 0; c < ex.first_tokens.size(); ++c) {
    h.add_first_token_ids(ex.first_tokens[c]);
    TokenToProto(ex.first_logprobs[c], h.add_first_logprobs());
    h.add_sampler_states(ex.sampler_states[c]);
  }
  h.set_num_tokens(static_cast<int32_t>(ex.num_positions));
  h.set_latent_dim(static_cast<int32_t>(ex.latent_dim));
  h.set_num_layers(static_cast<int32_t>(ex.layers));
  h.set_config_fingerprint(fingerprint);
  h.set_cached_prompt_tokens(static_cast<int32_t>(ex.cached_prompt_tokens));
  return h;
}

StatusOr<std::shared_ptr<KvExport>> ExportFromHeader(const attention_pb::KvTransferHeader& h) {
  auto ex = std::make_shared<KvExport>();
  DSV3_ASSIGN_OR_RETURN(ex->params, ParamsFromProto(h.request()));
  ex->params.prefill_only = false;
  ex->params.prompt.assign(h.prompt_ids().begin(), h.prompt_ids().end());
  if (h.first_token_ids_size() != ex->params.n || h.sampler_states_size() != ex->params.n ||
      h.first_logprobs_size() != ex->params.n) {
    return InvalidArgument("kv", StrCat("header has ", h.first_token_ids_size(), " first tokens and ",
                                        h.sampler_states_size(), " sampler states for n = ", ex->params.n));
  }
  for (int i = 0; i < h.first_token_ids_size(); ++i) {
    ex->first_tokens.push_back(h.first_token_ids(i));
    ex->first_logprobs.push_back(TokenFromProto(h.first_token_ids(i), h.first_logprobs(i)));
    ex->sampler_states.push_back(h.sampler_states(i));
  }
  if (h.num_tokens() <= 0 || h.num_layers() <= 0 || h.latent_dim() <= 0) {
    return InvalidArgument("kv", "header sizes must be positive");
  }
  ex->num_positions = h.num_tokens();
  ex->layers = h.num_layers();
  ex->latent_dim = h.latent_dim();
  ex->cached_prompt_tokens = h.cached_prompt_tokens();
  return ex;
}

}  // namespace dsv3
