#include "services/attention-worker/engine/engine.h"

#include <algorithm>
#include <future>

#include "common/sampling/raw_logprobs.h"
#include "services/attention-worker/engine/token_bytes.h"
#include "services/attention-worker/engine/paged_kv_sequence.h"

namespace dsv3 {

const char* FinishReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kNone: return "none";
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kAbort: return "abort";
    case FinishReason::kPrefillDone: return "prefill_done";
    case FinishReason::kError: return "error";
  }
  return "?";
}

// One request on the engine thread: its choices (created lazily: choice 0 runs the prompt,
// the others fork its KV when it first samples) and the output being gathered this step.
struct EngineRequest {
  GenerateParams params;
  std::shared_ptr<OutputStream> out;
  std::chrono::steady_clock::time_point arrival;
  std::vector<std::unique_ptr<Sequence>> seqs;
  uint64_t seed = 0;
  bool forked = false;
  bool done = false;
  bool first_output_sent = false;
  bool first_token_seen = false;
  double queue_seconds = -1;
  int64_t cached_prompt_tokens = 0;
  int64_t completion_tokens = 0;
  RequestOutput pending;
  bool has_pending = false;
  std::shared_ptr<void> admission_ticket;  // releases the request's admission share
};

namespace {
constexpr int64_t kRecentHashes = 256;

// The tokens a migrated request generated before it came here (the end of its prompt).
std::vector<int64_t> GeneratedPrefix(const GenerateParams& p) {
  const size_t g = static_cast<size_t>(std::max<int32_t>(0, p.generated_prefix));
  if (g == 0 || g > p.prompt.size()) return {};
  return std::vector<int64_t>(p.prompt.end() - static_cast<std::ptrdiff_t>(g), p.prompt.end());
}
}  // namespace

StatusOr<std::unique_ptr<Engine>> Engine::Create(Transformer& model, const EngineConfig& cfg) {
  const ModelConfig& mc = model.config();
  if (cfg.block_size <= 0 || cfg.block_size > 1024) {
    return InvalidArgument("engine", StrCat("block size ", cfg.block_size, " outside [1, 1024]"));
  }
  if (cfg.scheduler.max_batch_tokens <= 0 || cfg.scheduler.max_running <= 0 || cfg.max_queued_requests <= 0 ||
      cfg.max_queued_prompt_tokens <= 0) {
    return InvalidArgument("engine", "max_batch_tokens, max_running, max_queued_requests and max_queued_prompt_tokens must be positive");
  }
  const int64_t block_bytes = mc.num_hidden_layers * cfg.block_size * mc.latent_dim() * 4;
  const int64_t blocks = cfg.num_blocks > 0 ? cfg.num_blocks : cfg.kv_cache_bytes / block_bytes;
  if (blocks < 2) {
    return InvalidArgument("engine", StrCat("KV cache budget of ", cfg.kv_cache_bytes, " bytes holds ", blocks,
                                            " blocks of ", block_bytes, " bytes; need at least 2"));
  }
  return std::unique_ptr<Engine>(new Engine(model, cfg, blocks));
}

Engine::Engine(Transformer& model, const EngineConfig& cfg, int64_t num_blocks)
    : model_(model),
      cfg_(cfg),
      max_context_(cfg.max_model_len > 0
                       ? std::min(cfg.max_model_len, model.config().max_position_embeddings)
                       : model.config().max_position_embeddings),
      pool_(num_blocks, cfg.block_size, model.config().num_hidden_layers, model.config().latent_dim()),
      kv_(pool_),
      sched_(cfg.scheduler, kv_),
      seed_source_(std::random_device{}()) {
  if (cfg_.observer) {
    forward_observer_.on_routing = [o = cfg_.observer](int64_t layer, const RoutingResult& r) { o->OnRouting(layer, r); };
  }
  PublishLoad();
  thread_ = std::thread([this] { Loop(); });
}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> lk(cmd_mu_);
    stop_ = true;
  }
  cmd_cv_.notify_all();
  thread_.join();
}

void Engine::Post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lk(cmd_mu_);
    commands_.push_back(std::move(fn));
  }
  cmd_cv_.notify_all();
}

void Engine::RunOnEngine(std::function<void()> fn) {
  std::promise<void> done;
  auto fut = done.get_future();
  Post([&] {
    fn();
    done.set_value();
  });
  fut.wait();
}

Status Engine::Validate(const GenerateParams& p) const {
  const ModelConfig& mc = model_.config();
  const int64_t P = static_cast<int64_t>(p.prompt.size());
  if (P == 0) return InvalidArgument("prompt", "the prompt is empty");
  for (int64_t id : p.prompt) {
    if (id < 0 || id >= mc.vocab_size) {
      return InvalidArgument("prompt", StrCat("token id ", id, " outside the vocabulary [0, ", mc.vocab_size, ")"));
    }
  }
  if (P >= max_context_) {
    return InvalidArgument("prompt", StrCat("the prompt has ", P, " tokens but the context is ", max_context_,
                                            " tokens (room for at least one generated token is needed)"));
  }
  // 0: compute the prompt only (its prompt logprobs, or to warm the prefix cache).
  if (p.max_tokens < 0) return InvalidArgument("max_tokens", StrCat("max_tokens must not be negative, got ", p.max_tokens));
  if (p.n < 1 || p.n > cfg_.max_n) {
    return InvalidArgument("n", StrCat("n must be in [1, ", cfg_.max_n, "], got ", p.n));
  }
  if (p.generated_prefix < 0 || p.generated_prefix >= P) {
    return InvalidArgument("generated_prefix", StrCat("generated_prefix must be in [0, ", P, "), got ", p.generated_prefix));
  }
  if (p.generated_prefix > 0 && (p.n != 1 || p.prompt_logprobs >= 0)) {
    return InvalidArgument("generated_prefix", "a migrated request (generated_prefix > 0) needs n = 1 and no prompt logprobs");
  }
  const int64_t blocks_needed = (P + 1 + cfg_.block_size - 1) / cfg_.block_size;
  if (blocks_needed > pool_.num_blocks()) {
    return InvalidArgument("prompt", StrCat("the prompt needs ", blocks_needed, " KV blocks but this worker's cache has ",
                                            pool_.num_blocks()));
  }
  for (int64_t id : p.stop_token_ids) {
    if (id < 0 || id >= mc.vocab_size) {
      return InvalidArgument("stop_token_ids", StrCat("token id ", id, " outside the vocabulary"));
    }
  }
  if (p.sampling.json_object && token_bytes_ == nullptr) {
    return InvalidArgument("response_format",
                           StrCat("json_object needs the model's tokenizer.json on the attention worker: ",
                                  token_bytes_status_.ok() ? "not loaded" : token_bytes_status_.message()));
  }
  if (p.prompt_logprobs < -1 || p.prompt_logprobs > 20) {
    return InvalidArgument("prompt_logprobs", StrCat("prompt_logprobs must be in [0, 20] (or -1: none), got ",
                                                     p.prompt_logprobs));
  }
  return ValidateSamplingConfig(p.sampling, mc.vocab_size);
}

Status Engine::EnsureTokenBytes() {
  std::call_once(token_bytes_once_, [this] {
    auto t = LoadTokenBytes(cfg_.tokenizer_dir, model_.config().vocab_size, model_.config().eos_token_id);
    if (t.ok()) {
      token_bytes_ = std::move(*t);
    } else {
      token_bytes_status_ = t.status();
    }
  });
  return token_bytes_status_;
}

StatusOr<std::shared_ptr<OutputStream>> Engine::Submit(GenerateParams p) {
  if (p.sampling.json_object) (void)EnsureTokenBytes();  // Validate reports a failure
  DSV3_RETURN_IF_ERROR(Validate(p));
  const int64_t tokens = static_cast<int64_t>(p.prompt.size());
  const int64_t before = admission_.requests.fetch_add(1);
  const int64_t tokens_before = admission_.prompt_tokens.fetch_add(tokens);
  if (before >= cfg_.max_queued_requests || (before > 0 && tokens_before + tokens > cfg_.max_queued_prompt_tokens)) {
    admission_.requests.fetch_sub(1);
    admission_.prompt_tokens.fetch_sub(tokens);
    return absl::ResourceExhaustedError(
        before >= cfg_.max_queued_requests
            ? StrCat("attention worker ", cfg_.worker_id, " is full: ", before,
                     " requests admitted (--max-queued-requests ", cfg_.max_queued_requests, ")")
            : StrCat("attention worker ", cfg_.worker_id, " is full: ", tokens_before, " prompt tokens queued (+", tokens,
                     " over --max-queued-prompt-tokens ", cfg_.max_queued_prompt_tokens, ")"));
  }
  auto r = std::make_shared<EngineRequest>();
  Admission* adm = &admission_;
  r->admission_ticket = std::shared_ptr<void>(nullptr, [adm, tokens](void*) {
    adm->requests.fetch_sub(1);
    adm->prompt_tokens.fetch_sub(tokens);
  });
  r->params = std::move(p);
  r->out = std::make_shared<OutputStream>();
  r->arrival = std::chrono::steady_clock::now();
  auto out = r->out;
  Post([this, r] { StartRequest(r); });
  return out;
}

std::unique_ptr<SequenceSampler> Engine::NewSampler(const GenerateParams& p, int32_t choice, uint64_t seed) {
  auto s = std::make_unique<SequenceSampler>(p.sampling, model_.config().vocab_size, p.prompt, seed,
                                             static_cast<uint64_t>(choice));
  if (p.generated_prefix > 0) s->ResumeAfter(GeneratedPrefix(p));
  return s;
}

std::unique_ptr<Sequence> Engine::NewSequence(EngineRequest* r, int32_t choice, std::unique_ptr<SequenceSampler> sampler) {
  auto s = std::make_unique<Sequence>();
  s->id = next_seq_id_++;
  s->req = r;
  s->choice = choice;
  s->tokens = r->params.prompt;
  s->prompt_len = static_cast<int64_t>(r->params.prompt.size());
  s->prompt_logprob_next = choice == 0 && r->params.prompt_logprobs >= 0 ? 1 : s->prompt_len;
  s->sampler = std::move(sampler);
  const int64_t g = r->params.generated_prefix;
  if (g > 0 && g <= cfg_.max_exact_replay_tokens) s->replay_from = s->prompt_len - g;
  if (r->params.sampling.json_object) {
    s->json = std::make_unique<JsonConstraint>(token_bytes_);
    for (int64_t t : GeneratedPrefix(r->params)) s->json->Accept(t);  // a migrated request's output so far
  }
  return s;
}

void Engine::StartRequest(std::shared_ptr<EngineRequest> r) {
  r->seed = r->params.sampling.seed ? *r->params.sampling.seed : seed_source_();
  auto s = NewSequence(r.get(), 0, NewSampler(r->params, 0, r->seed));
  Sequence* raw = s.get();
  r->seqs.push_back(std::move(s));
  prompt_tokens_ += r->params.prompt.size();
  if (static_cast<int64_t>(r->params.prompt.size()) >= cfg_.block_size) {
    recent_hashes_.push_back(HashBlock(0, r->params.prompt.data(), cfg_.block_size));
    if (static_cast<int64_t>(recent_hashes_.size()) > kRecentHashes) recent_hashes_.erase(recent_hashes_.begin());
  }
  by_id_[r->params.request_id].push_back(std::move(r));
  sched_.AddWaiting(raw);
}

bool Engine::Abort(const std::string& request_id) {
  bool found = false;
  RunOnEngine([&] {
    auto it = by_id_.find(request_id);
    if (it == by_id_.end()) return;
    found = true;
    auto reqs = it->second;  // FinishSequence may erase the entry
    for (auto& r : reqs) {
      for (auto& s : r->seqs) {
        if (s->state != SeqState::kFinished) FinishSequence(s.get(), FinishReason::kAbort);
      }
      // Choices not forked yet end too.
      for (int32_t c = static_cast<int32_t>(r->seqs.size()); c < r->params.n; ++c) {
        PendingChoice(r.get(), c).finish = FinishReason::kAbort;
      }
      r->forked = true;
      MaybeCompleteRequest(r.get());
    }
    FlushOutputs();
    PublishLoad();
  });
  return found;
}

RequestOutput& Engine::Pending(EngineRequest* r) {
  if (!r->has_pending) {
    r->has_pending = true;
    r->pending = RequestOutput{};
    touched_.push_back(r);
  }
  return r->pending;
}

ChoiceOutput& Engine::PendingChoice(EngineRequest* r, int32_t choice) {
  Pending(r);
  for (auto& c : r->pending.choices) {
    if (c.index == choice) return c;
  }
  r->pending.choices.push_back(ChoiceOutput{});
  r->pending.choices.back().index = choice;
  return r->pending.choices.back();
}

FinishReason Engine::CheckFinish(const Sequence* s, int64_t token) const {
  const GenerateParams& p = s->req->params;
  if (!p.ignore_eos && token == model_.config().eos_token_id) return FinishReason::kStop;
  if (std::find(p.stop_token_ids.begin(), p.stop_token_ids.end(), token) != p.stop_token_ids.end()) {
    return FinishReason::kStop;
  }
  if (s->generated() >= p.max_tokens) return FinishReason::kLength;
  if (static_cast<int64_t>(s->tokens.size()) >= max_context_) return FinishReason::kLength;
  return FinishReason::kNone;
}

void Engine::NoteToken(Sequence* s) {
  const auto now = std::chrono::steady_clock::now();
  EngineRequest* r = s->req;
  if (cfg_.observer) {
    if (!r->first_token_seen) {
      cfg_.observer->OnFirstToken(std::chrono::duration<double>(now - r->arrival).count(), std::max(0.0, r->queue_seconds));
    } else if (s->generated() > 0) {
      cfg_.observer->OnInterTokenLatency(std::chrono::duration<double>(now - s->last_token_time).count());
    }
  }
  r->first_token_seen = true;
  s->last_token_time = now;
}

SampledToken Engine::SampleConstrained(SequenceSampler& sampler, JsonConstraint* json, const float* row) {
  if (json == nullptr) return sampler.Sample(row, &scratch_);
  json->Mask(&allowed_);
  SampledToken t = sampler.Sample(row, &scratch_, &allowed_);
  json->Accept(t.id);
  return t;
}

void Engine::SampleInto(Sequence* s, const float* row) {
  NoteToken(s);
  SampledToken t = SampleConstrained(*s->sampler, s->json.get(), row);
  s->sampler->Accept(t.id);
  s->tokens.push_back(t.id);
  ++generated_tokens_;
  ++s->req->completion_tokens;
  ChoiceOutput& c = PendingChoice(s->req, s->choice);
  c.tokens.push_back(t.id);
  const auto& sp = s->req->params.sampling;
  if (sp.logprobs > 0 || sp.top_logprobs > 0) c.logprobs.push_back(std::move(t));
  const FinishReason why = CheckFinish(s, s->tokens.back());
  if (why != FinishReason::kNone) FinishSequence(s, why);
}

void Engine::SampleNext(Sequence* s, const float* row) {
  EngineRequest* r = s->req;
  if (r->params.max_tokens == 0) {
    FinishSequence(s, FinishReason::kLength);  // every choice ends with no token
    return;
  }
  if (r->params.prefill_only) {
    ExportPrefill(s, row);
    return;
  }
  if (!r->forked && s->choice == 0) {
    r->forked = true;
    // The other choices share the prompt's KV: full blocks referenced, the partial one
    // copied. Without a free block a choice recomputes its prompt (prefix cache helps).
    for (int32_t c = 1; c < r->params.n; ++c) {
      auto child = NewSequence(r, c, NewSampler(r->params, c, r->seed));
      Sequence* ch = child.get();
      r->seqs.push_back(std::move(child));
      auto forked = kv_.Fork(s->id, ch->id);
      if (forked.ok() && *forked) {
        ch->in_kv = true;
        ch->num_computed = s->num_computed;
        sched_.AddRunning(ch);
        SampleInto(ch, row);
      } else {
        sched_.AddWaiting(ch);
      }
    }
  }
  SampleInto(s, row);
}

void Engine::ExportPrefill(Sequence* s, const float* row) {
  EngineRequest* r = s->req;
  NoteToken(s);
  r->forked = true;
  auto ex = std::make_shared<KvExport>();
  ex->params = r->params;
  ex->params.prefill_only = false;
  ex->params.prompt_logprobs = -1;  // computed here, already sent
  bool any_continues = false;
  std::vector<std::unique_ptr<SequenceSampler>> samplers;
  for (int32_t c = 0; c < r->params.n; ++c) {
    auto sampler = c == 0 ? std::move(s->sampler) : NewSampler(r->params, c, r->seed);
    // The decode side rebuilds a JSON constraint's state from this first token.
    std::unique_ptr<JsonConstraint> json;
    if (r->params.sampling.json_object) json = std::make_unique<JsonConstraint>(token_bytes_);
    SampledToken t = SampleConstrained(*sampler, json.get(), row);
    sampler->Accept(t.id);
    ++generated_tokens_;
    ++r->completion_tokens;
    ChoiceOutput& co = PendingChoice(r, c);
    co.tokens.push_back(t.id);
    const auto& sp = r->params.sampling;
    if (sp.logprobs > 0 || sp.top_logprobs > 0) co.logprobs.push_back(t);
    // Finish rules as if the choice went on here (generated = 1).
    FinishReason why = FinishReason::kNone;
    if (!r->params.ignore_eos && t.id == model_.config().eos_token_id) why = FinishReason::kStop;
    if (std::find(r->params.stop_token_ids.begin(), r->params.stop_token_ids.end(), t.id) !=
        r->params.stop_token_ids.end()) {
      why = FinishReason::kStop;
    }
    if (why == FinishReason::kNone && (r->params.max_tokens <= 1 || s->prompt_len + 1 >= max_context_)) {
      why = FinishReason::kLength;
    }
    co.finish = why == FinishReason::kNone ? FinishReason::kPrefillDone : why;
    any_continues |= why == FinishReason::kNone;
    ex->first_tokens.push_back(t.id);
    ex->first_logprobs.push_back(std::move(t));
    ex->sampler_states.push_back(sampler->SerializeState());
    samplers.push_back(std::move(sampler));
  }
  if (any_continues) {
    const int64_t P = s->prompt_len, LD = pool_.latent_dim(), L = pool_.layers(), bs = pool_.block_size();
    ex->num_positions = P;
    ex->layers = L;
    ex->latent_dim = LD;
    ex->cached_prompt_tokens = r->cached_prompt_tokens;
    ex->data.resize(static_cast<size_t>(L * P * LD));
    auto table = kv_.BlockTable(s->id);
    if (table.ok()) {
      for (int64_t l = 0; l < L; ++l) {
        for (int64_t p = 0; p < P; p += bs) {
          const int64_t n = std::min(bs, P - p);
          std::copy_n(pool_.Data((**table)[static_cast<size_t>(p / bs)], l), n * LD, ex->data.data() + (l * P + p) * LD);
        }
      }
      r->pending.kv_export = ex;
    }
  }
  s->state = SeqState::kFinished;
  s->finish = FinishReason::kPrefillDone;
  sched_.Remove(s);
  r->done = true;
  if (cfg_.observer) {
    cfg_.observer->OnRequestFinished(
        any_continues ? FinishReason::kPrefillDone : r->pending.choices.front().finish,
        std::chrono::duration<double>(std::chrono::steady_clock::now() - r->arrival).count(), s->prompt_len,
        r->completion_tokens);
  }
  r->pending.final = true;
  r->pending.prompt_tokens = s->prompt_len;
  r->pending.completion_tokens = r->completion_tokens;
  r->pending.cached_prompt_tokens = r->cached_prompt_tokens;
  auto& list = by_id_[r->params.request_id];
  // The request object lives until FlushOutputs has sent its last output.
  (void)list;
}

void Engine::FinishSequence(Sequence* s, FinishReason why) {
  if (s->state == SeqState::kFinished) return;
  sched_.Remove(s);
  s->state = SeqState::kFinished;
  s->finish = why;
  PendingChoice(s->req, s->choice).finish = why;
  EngineRequest* r = s->req;
  if (!r->forked) {
    // Ended before its first token (abort, cache too small): the choices that never
    // started end the same way.
    for (int32_t c = static_cast<int32_t>(r->seqs.size()); c < r->params.n; ++c) PendingChoice(r, c).finish = why;
    r->forked = true;
  }
  MaybeCompleteRequest(s->req);
}

void Engine::MaybeCompleteRequest(EngineRequest* r) {
  if (r->done || !r->forked) return;
  for (auto& s : r->seqs) {
    if (s->state != SeqState::kFinished) return;
  }
  r->done = true;
  if (cfg_.observer) {
    FinishReason why = FinishReason::kNone;
    for (auto& s : r->seqs) why = why == FinishReason::kNone ? s->finish : why;
    cfg_.observer->OnRequestFinished(
        why, std::chrono::duration<double>(std::chrono::steady_clock::now() - r->arrival).count(),
        static_cast<int64_t>(r->params.prompt.size()), r->completion_tokens);
  }
  PendingChoice(r, 0);  // makes sure an output exists
  r->pending.final = true;
  r->pending.prompt_tokens = static_cast<int64_t>(r->params.prompt.size());
  r->pending.completion_tokens = r->completion_tokens;
  r->pending.cached_prompt_tokens = r->cached_prompt_tokens;
}

void Engine::FailRequest(EngineRequest* r, const Status& st) {
  for (auto& s : r->seqs) {
    if (s->state != SeqState::kFinished) {
      sched_.Remove(s.get());
      s->state = SeqState::kFinished;
      s->finish = FinishReason::kError;
    }
  }
  r->done = true;
  if (cfg_.observer) {
    cfg_.observer->OnRequestFinished(
        FinishReason::kError, std::chrono::duration<double>(std::chrono::steady_clock::now() - r->arrival).count(),
        static_cast<int64_t>(r->params.prompt.size()), r->completion_tokens);
  }
  PendingChoice(r, 0);
  r->pending.final = true;
  r->pending.error = st;
}

void Engine::FlushOutputs() {
  if (touched_.empty()) return;
  // Load first: a caller that saw its request end also sees the blocks it freed.
  PublishLoad();
  for (EngineRequest* r : touched_) {
    if (!r->has_pending) continue;
    RequestOutput o = std::move(r->pending);
    r->has_pending = false;
    r->pending = RequestOutput{};
    if (!r->first_output_sent) {
      o.queue_seconds = r->queue_seconds;
      r->first_output_sent = true;
    }
    std::sort(o.choices.begin(), o.choices.end(), [](const ChoiceOutput& a, const ChoiceOutput& b) { return a.index < b.index; });
    const bool final = o.final;
    r->out->Push(std::move(o));
    if (final) {
      auto it = by_id_.find(r->params.request_id);
      if (it != by_id_.end()) {
        auto& v = it->second;
        v.erase(std::remove_if(v.begin(), v.end(), [&](const std::shared_ptr<EngineRequest>& p) { return p.get() == r; }),
                v.end());
        if (v.empty()) by_id_.erase(it);
      }
    }
  }
  touched_.clear();
}

void Engine::EmitPromptLogprobs(Sequence* s, int64_t start, int64_t n, const float* rows) {
  EngineRequest* r = s->req;
  const int64_t V = model_.config().vocab_size;
  for (int64_t j = 0; j < n; ++j) {
    const int64_t target = start + j + 1;  // row j predicts the token after position start + j
    if (target < s->prompt_logprob_next) continue;
    if (target >= s->prompt_len) break;
    RequestOutput& o = Pending(r);
    if (o.prompt_logprobs.empty()) o.prompt_logprobs_start = target;
    o.prompt_logprobs.push_back(RawLogprobs(rows + j * V, V, s->tokens[static_cast<size_t>(target)],
                                            r->params.prompt_logprobs));
    s->prompt_logprob_next = target + 1;
  }
}

void Engine::Step() {
  SchedulerOutput so = sched_.Schedule();
  for (Sequence* s : so.cannot_grow) {
    // Running alone, the cache cannot hold more of it: end the choice at its length.
    s->state = SeqState::kRunning;  // FinishSequence expects a live sequence
    FinishSequence(s, FinishReason::kLength);
  }
  if (so.slices.empty()) {
    FlushOutputs();
    return;
  }
  std::vector<std::unique_ptr<PagedKvSequence>> views;
  std::vector<SequenceInput> inputs;
  std::vector<int64_t> first_row;  // each slice's first row in logits_
  int64_t rows = 0;
  const auto now = std::chrono::steady_clock::now();
  for (const ScheduledSlice& sl : so.slices) {
    Sequence* s = sl.seq;
    EngineRequest* r = s->req;
    if (r->queue_seconds < 0) {
      r->queue_seconds = std::chrono::duration<double>(now - r->arrival).count();
      if (s->choice == 0 && s->preemptions == 0) r->cached_prompt_tokens = s->num_computed;
    }
    auto table = kv_.BlockTable(s->id);
    views.push_back(std::make_unique<PagedKvSequence>(pool_, **table, s->num_computed));
    inputs.push_back({views.back().get(), s->tokens.data() + s->num_computed, sl.num_tokens, s->num_computed});
    // The slice's logits at position q predict token q + 1: all rows when one is owed.
    inputs.back().all_logits = s->wants_prompt_logits() && s->num_computed + sl.num_tokens >= s->prompt_logprob_next;
    first_row.push_back(rows);
    rows += inputs.back().all_logits ? sl.num_tokens : 1;
  }
  const auto f0 = std::chrono::steady_clock::now();
  Status st = model_.Forward(inputs, &logits_, false, cfg_.observer ? &forward_observer_ : nullptr);
  ++steps_;
  if (cfg_.observer) {
    StepInfo info;
    info.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - f0).count();
    info.sequences = static_cast<int64_t>(so.slices.size());
    for (const ScheduledSlice& sl : so.slices) {
      info.tokens += sl.num_tokens;
      info.decode_tokens += sl.seq->generated() > 0 && sl.num_tokens == 1 ? 1 : 0;
    }
    info.failed = !st.ok();
    cfg_.observer->OnStep(info);
  }
  if (!st.ok()) {
    // A failed step (an expert worker died, a deadline passed) fails the requests in it;
    // their blocks return to the pool and the engine goes on with the rest.
    for (const ScheduledSlice& sl : so.slices) {
      if (!sl.seq->req->done) FailRequest(sl.seq->req, st);
    }
    FlushOutputs();
    return;
  }
  const int64_t V = model_.config().vocab_size;
  for (size_t i = 0; i < so.slices.size(); ++i) {
    Sequence* s = so.slices[i].seq;
    const int64_t n = so.slices[i].num_tokens;
    const float* slice_logits = logits_.data() + first_row[i] * V;
    if (inputs[i].all_logits) EmitPromptLogprobs(s, s->num_computed, n, slice_logits);
    (void)kv_.Commit(s->id, s->tokens.data() + s->num_computed, n);
    s->num_computed += n;
    const float* last_row = slice_logits + (inputs[i].all_logits ? n - 1 : 0) * V;
    if (s->remaining() == 0 && s->state == SeqState::kRunning) SampleNext(s, last_row);
  }
  FlushOutputs();
}

StatusOr<std::string> Engine::ImportKv(std::shared_ptr<KvExport> kv) {
  const ModelConfig& mc = model_.config();
  if (kv->params.sampling.json_object) (void)EnsureTokenBytes();  // Validate reports a failure
  if (kv->layers != mc.num_hidden_layers || kv->latent_dim != mc.latent_dim()) {
    return InvalidArgument("kv", StrCat("imported KV has ", kv->layers, " layers x ", kv->latent_dim,
                                        " values; this model has ", mc.num_hidden_layers, " x ", mc.latent_dim()));
  }
  if (kv->num_positions != static_cast<int64_t>(kv->params.prompt.size()) ||
      static_cast<int64_t>(kv->data.size()) != kv->layers * kv->num_positions * kv->latent_dim) {
    return InvalidArgument("kv", "imported KV size does not match its prompt");
  }
  const int64_t n = kv->params.n;
  if (static_cast<int64_t>(kv->first_tokens.size()) != n || static_cast<int64_t>(kv->sampler_states.size()) != n) {
    return InvalidArgument("kv", "imported KV needs one first token and sampler state per choice");
  }
  DSV3_RETURN_IF_ERROR(Validate(kv->params));
  Status result;
  std::string handle;
  RunOnEngine([&] {
    const uint64_t id = next_seq_id_++;
    auto started = kv_.Start(id, {});
    if (!started.ok()) {
      result = started.status();
      return;
    }
    const int64_t P = kv->num_positions, LD = kv->latent_dim, bs = pool_.block_size();
    auto room = kv_.Reserve(id, P);
    if (!room.ok() || !*room) {
      (void)kv_.Free(id);
      result = absl::ResourceExhaustedError(
          StrCat("kv: no room for ", P, " imported positions (", pool_.num_free(), " free blocks)"));
      return;
    }
    const auto& table = **kv_.BlockTable(id);
    for (int64_t l = 0; l < kv->layers; ++l) {
      for (int64_t p = 0; p < P; p += bs) {
        const int64_t m = std::min(bs, P - p);
        std::copy_n(kv->data.data() + (l * P + p) * LD, m * LD, pool_.Data(table[static_cast<size_t>(p / bs)], l));
      }
    }
    (void)kv_.Commit(id, kv->params.prompt.data(), P);
    kv->data.clear();
    kv->data.shrink_to_fit();
    handle = StrCat(cfg_.worker_id, "/kv-", next_handle_++);
    parked_[handle] = Parked{id, kv, std::chrono::steady_clock::now() +
                                         std::chrono::milliseconds(static_cast<int64_t>(cfg_.import_ttl_seconds * 1000))};
    PublishLoad();
  });
  if (!result.ok()) return result;
  return handle;
}

StatusOr<std::shared_ptr<OutputStream>> Engine::Resume(const std::string& handle, const std::string& request_id) {
  Status result;
  std::shared_ptr<OutputStream> out;
  RunOnEngine([&] {
    auto it = parked_.find(handle);
    if (it == parked_.end()) {
      result = NotFound("kv", StrCat("no imported KV under handle '", handle, "' (expired, used, or never sent here)"));
      return;
    }
    Parked pk = std::move(it->second);
    parked_.erase(it);
    auto r = std::make_shared<EngineRequest>();
    r->params = pk.kv->params;
    if (!request_id.empty()) r->params.request_id = request_id;
    r->out = std::make_shared<OutputStream>();
    r->arrival = std::chrono::steady_clock::now();
    r->forked = true;
    r->queue_seconds = 0;
    r->cached_prompt_tokens = pk.kv->cached_prompt_tokens;
    r->completion_tokens = r->params.n;  // the first tokens came from the prefill worker
    r->first_token_seen = true;          // TTFT belongs to the prefill worker
    out = r->out;
    std::vector<Sequence*> live;
    for (int32_t c = 0; c < r->params.n; ++c) {
      auto sampler = SequenceSampler::Restore(r->params.sampling, model_.config().vocab_size, r->params.prompt,
                                              pk.kv->sampler_states[static_cast<size_t>(c)]);
      if (!sampler.ok()) {
        result = sampler.status();
        (void)kv_.Free(pk.seq_id);
        return;
      }
      auto s = NewSequence(r.get(), c, std::make_unique<SequenceSampler>(std::move(*sampler)));
      s->last_token_time = r->arrival;
      r->seqs.push_back(std::move(s));
    }
    // Choice 0 adopts the imported blocks; the others fork them (or recompute).
    for (int32_t c = 0; c < r->params.n; ++c) {
      Sequence* s = r->seqs[static_cast<size_t>(c)].get();
      if (c == 0) {
        s->id = pk.seq_id;
        s->in_kv = true;
        s->num_computed = s->prompt_len;
      } else {
        auto f = kv_.Fork(pk.seq_id, s->id);
        if (f.ok() && *f) {
          s->in_kv = true;
          s->num_computed = s->prompt_len;
        }
      }
    }
    for (auto& sp : r->seqs) {
      Sequence* s = sp.get();
      const int64_t first = pk.kv->first_tokens[static_cast<size_t>(s->choice)];
      s->tokens.push_back(first);
      if (s->json) s->json->Accept(first);
      const FinishReason why = CheckFinish(s, first);
      if (why != FinishReason::kNone) {
        s->state = SeqState::kRunning;
        FinishSequence(s, why);  // frees its blocks
      } else if (s->in_kv) {
        sched_.AddRunning(s);
      } else {
        sched_.AddWaiting(s);
      }
    }
    by_id_[r->params.request_id].push_back(r);
    MaybeCompleteRequest(r.get());
    FlushOutputs();
    PublishLoad();
  });
  if (!result.ok()) return result;
  return out;
}

void Engine::ExpireImports() {
  const auto now = std::chrono::steady_clock::now();
  for (auto it = parked_.begin(); it != parked_.end();) {
    if (it->second.deadline <= now) {
      (void)kv_.Free(it->second.seq_id);
      it = parked_.erase(it);
    } else {
      ++it;
    }
  }
}

void Engine::PublishLoad() {
  EngineLoad l;
  const SchedulerStats st = sched_.stats();
  l.waiting = st.waiting;
  l.running = st.running;
  l.preemptions = st.preemptions;
  l.kv_blocks_total = pool_.num_blocks();
  l.kv_blocks_free = pool_.num_free();
  l.parked_imports = static_cast<int64_t>(parked_.size());
  l.prefix_queried_tokens = kv_.prefix_stats().queried_tokens;
  l.prefix_hit_tokens = kv_.prefix_stats().hit_tokens;
  l.steps = steps_;
  l.prompt_tokens = prompt_tokens_;
  l.generated_tokens = generated_tokens_;
  l.evictions = pool_.stats().evictions;
  l.recent_prefix_hashes = recent_hashes_;
  std::lock_guard<std::mutex> lk(load_mu_);
  load_ = std::move(l);
}

EngineLoad Engine::load() const {
  std::lock_guard<std::mutex> lk(load_mu_);
  return load_;
}

void Engine::Loop() {
  while (true) {
    std::vector<std::function<void()>> cmds;
    {
      std::unique_lock<std::mutex> lk(cmd_mu_);
      if (commands_.empty() && !stop_ && sched_.idle()) {
        // Idle: sleep until work arrives (wake now and then to expire parked imports).
        cmd_cv_.wait_for(lk, std::chrono::milliseconds(parked_.empty() ? 1000 : 100));
      }
      if (stop_) break;
      cmds.swap(commands_);
    }
    for (auto& c : cmds) c();
    FlushOutputs();
    ExpireImports();
    if (!sched_.idle()) {
      const uint64_t before = steps_;
      Step();
      if (steps_ == before) {
        // Waiting work that could not be admitted (cache held by parked imports):
        // do not spin.
        std::unique_lock<std::mutex> lk(cmd_mu_);
        if (commands_.empty() && !stop_) cmd_cv_.wait_for(lk, std::chrono::milliseconds(5));
      }
    }
    PublishLoad();
  }
  // Shutdown: every open request ends with an error so no caller waits forever.
  for (auto& [id, reqs] : by_id_) {
    for (auto& r : reqs) {
      if (!r->done) FailRequest(r.get(), absl::UnavailableError("engine: shutting down"));
    }
  }
  FlushOutputs();
}

}  // namespace dsv3
