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
#include <iostream>
#include <string>

#include "common/util/allocator_tuning.h"
#include <vector>

#include <nlohmann/json.hpp>

#include "common/checkpoint/checkpoint.h"
#include "common/model/model_weights.h"
#include "common/model/sampler.h"
#include "common/model/transformer.h"
#include "common/transport/expert_cluster.h"
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
  std::vector<std::string> expert_workers;  // empty: experts in-process
  ExpertClusterOptions cluster;
};

void Usage() {
  std::fprintf(stderr,
               "usage: dsv3-generate --model DIR (--prompt-ids 1,2,3 | --prompt TEXT | --interactive)\n"
               "       [--max-new-tokens N] [--top-logprobs K] [--temperature T] [--top-p P] [--top-k K]\n"
               "       [--seed S] [--threads N] [--isa auto|scalar|avx2|avx512] [--ignore-eos] [--json]\n"
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
    if (k == "--help" || k == "-h") { Usage(); std::exit(0); }
    if (!val(&v)) return bad("missing value for " + k);
    int64_t n = 0;
    if (k == "--model") {
      a->model = v;
    } else if (k == "--prompt-ids") {
      a->have_prompt_ids = true;
      size_t p = 0;
      while (p <= v.size()) {
        size_t q = v.find(',', p);
        if (q == std::string::npos) q = v.size();
        if (!ParseInt(v.substr(p, q - p), &n)) return bad("--prompt-ids must be comma-separated integers, got '" + v + "'");
        a->prompt_ids.push_back(n);
        p = q + 1;
      }
    } else if (k == "--prompt") {
      a->prompt_text = v;
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
      size_t p = 0;
      while (p <= v.size()) {
        size_t q = v.find(',', p);
        if (q == std::string::npos) q = v.size();
        if (q > p) a->expert_workers.push_back(v.substr(p, q - p));
        p = q + 1;
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
  if (!a->prompt_text.empty() || a->interactive) {
    return Unimplemented("dsv3-generate",
                         "--prompt and --interactive need the tokenizer and chat template, which are not "
                         "wired into dsv3-generate yet; use --prompt-ids (see README: Status)");
  }
  if (!a->have_prompt_ids || a->prompt_ids.empty()) return bad("--prompt-ids is required (comma-separated token ids)");
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

int Run(const Args& a) {
  auto ck = Checkpoint::Open(a.model);
  if (!ck.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(ck.status().message()).c_str());
    return 1;
  }
  const ModelConfig& cfg = (*ck)->config();
  const auto t_load0 = std::chrono::steady_clock::now();
  WeightSelection sel;
  sel.routed_experts = a.expert_workers.empty();  // remote experts are not mapped here
  auto weights = LoadModelWeights(**ck, sel, StderrLoadProgress());
  if (!weights.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(weights.status().message()).c_str());
    return 1;
  }
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load0).count();
  std::string err;
  auto backend = kernels::MakeCpuBackend({a.isa, a.threads}, &err);
  if (!backend) {
    std::fprintf(stderr, "error: %s\n", err.c_str());
    return 1;
  }
  for (int64_t id : a.prompt_ids) {
    if (id < 0 || id >= cfg.vocab_size) {
      std::fprintf(stderr, "error: prompt token id %lld outside the vocabulary [0, %lld)\n", static_cast<long long>(id),
                   static_cast<long long>(cfg.vocab_size));
      return 2;
    }
  }
  if (static_cast<int64_t>(a.prompt_ids.size()) + a.max_new_tokens > cfg.max_position_embeddings) {
    std::fprintf(stderr, "error: prompt + max-new-tokens exceeds max_position_embeddings %lld\n",
                 static_cast<long long>(cfg.max_position_embeddings));
    return 2;
  }
  std::unique_ptr<ExpertDispatcher> dispatcher;
  if (!a.expert_workers.empty()) {
    auto d = ConnectExpertWorkers(cfg, a.expert_workers, a.cluster);
    if (!d.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(d.status().message()).c_str());
      return 1;
    }
    dispatcher = std::move(*d);
  }
  Transformer model(cfg, *weights, *backend, dispatcher.get());
  Sampler sampler(a.sampling);
  auto kv = model.NewCache();
  std::vector<float> logits;
  nlohmann::json steps = nlohmann::json::array();
  std::vector<int64_t> out;
  std::string finish = "length";

  const auto t0 = std::chrono::steady_clock::now();
  Status st = model.Forward({{kv.get(), a.prompt_ids.data(), static_cast<int64_t>(a.prompt_ids.size()), 0}}, &logits);
  const auto t1 = std::chrono::steady_clock::now();
  int64_t pos = static_cast<int64_t>(a.prompt_ids.size());
  int64_t decode_steps = 0;
  for (int64_t s = 0; st.ok() && s < a.max_new_tokens; ++s) {
    const int64_t tok = sampler.Sample(logits.data(), cfg.vocab_size);
    double lp = 0;
    auto top = TopLogprobs(logits.data(), cfg.vocab_size, a.top_logprobs, &lp, tok);
    nlohmann::json step = {{"pos", pos}, {"token", tok}, {"logprob", lp}};
    if (a.top_logprobs > 0) {
      nlohmann::json t = nlohmann::json::array();
      for (const auto& x : top) t.push_back({{"id", x.id}, {"logprob", x.logprob}});
      step["top_logprobs"] = t;
    }
    steps.push_back(step);
    out.push_back(tok);
    if (!a.json) {
      std::printf("%lld%s", static_cast<long long>(tok), s + 1 < a.max_new_tokens ? "," : "\n");
      std::fflush(stdout);
    }
    if (tok == cfg.eos_token_id && !a.ignore_eos) {
      finish = "stop";
      break;
    }
    if (s + 1 == a.max_new_tokens) break;
    st = model.Forward({{kv.get(), &tok, 1, pos}}, &logits);
    ++pos;
    ++decode_steps;
  }
  const auto t2 = std::chrono::steady_clock::now();
  if (!st.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  const double prefill_s = std::chrono::duration<double>(t1 - t0).count();
  const double decode_s = std::chrono::duration<double>(t2 - t1).count();
  const double prefill_tps = a.prompt_ids.size() / prefill_s;
  const double decode_tps = decode_steps > 0 ? decode_steps / decode_s : 0.0;
  const int64_t bpt = DecodeBytesPerToken(cfg, *weights);
  if (a.json) {
    nlohmann::json j = {{"model", a.model},
                        {"backend", backend->name()},
                        {"threads", backend->num_threads()},
                        {"prompt_ids", a.prompt_ids},
                        {"generated_ids", out},
                        {"finish_reason", finish},
                        {"steps", steps},
                        {"load_seconds", load_s},
                        {"prefill_tokens", a.prompt_ids.size()},
                        {"prefill_seconds", prefill_s},
                        {"prefill_tokens_per_s", prefill_tps},
                        {"decode_tokens", decode_steps},
                        {"decode_seconds", decode_s},
                        {"decode_tokens_per_s", decode_tps},
                        {"decode_weight_bytes_per_token", bpt},
                        {"decode_weight_gb_per_s", decode_tps * bpt / 1e9}};
    if (dispatcher) {
      const auto& es = dispatcher->stats();
      j["expert_workers"] = a.expert_workers;
      j["expert_exchanges"] = es.exchanges;
      j["expert_exchange_seconds"] = es.seconds;
      j["expert_bytes_sent"] = es.bytes_sent;
      j["expert_bytes_received"] = es.bytes_received;
    }
    std::cout << j.dump() << std::endl;
  } else {
    std::fprintf(stderr,
                 "[%s, %d threads] prefill %zu tok in %.3f s (%.1f tok/s); decode %lld tok in %.3f s (%.1f tok/s, "
                 "%.1f MB weights/token, %.1f GB/s)\n",
                 backend->name().c_str(), backend->num_threads(), a.prompt_ids.size(), prefill_s, prefill_tps,
                 static_cast<long long>(decode_steps), decode_s, decode_tps, bpt / 1e6, decode_tps * bpt / 1e9);
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
