// The serving engine on a checkpoint (bench/run.sh passes bench-s in DSV3_BENCH_MODEL;
// DSV3_BENCH_EXPERT_WORKERS puts the routed experts in worker processes):
//   EngineDecode/batch:B      decode tokens/s with B requests in the running batch
//   EngineTtft/prompt:P       time to the first token of one P-token prompt
//   EnginePrefixCache/warm:W  TTFT of a 1024-token shared system prompt + 32-token turn,
//                             cold (W=0: a new system prompt each time) vs cached (W=1)
//   KvTransfer/tokens:N/ucx_piece_kib:U  prefill->decode KV push into a decode engine on
//                             loopback over gRPC (U=0) or UCX in pieces of U KiB, bytes/s
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_split.h"
#include "bench/bench_model.h"
#include "services/attention-worker/attention_service.h"
#include "services/attention-worker/engine/engine.h"
#include "services/attention-worker/kv_transfer_client.h"

namespace {

using namespace dsv3;
using Clock = std::chrono::steady_clock;

using Loaded = BenchModel;
Loaded LoadModel() { return LoadBenchModel(); }

Loaded& Model() {
  static Loaded l = LoadModel();
  return l;
}

// One engine per model for the whole run (engines must not share a model concurrently).
Engine* TheEngine() {
  static std::unique_ptr<Engine> e = [] {
    std::unique_ptr<Engine> out;
    if (!Model().m) return out;
    EngineConfig cfg;
    cfg.kv_cache_bytes = 2ll << 30;
    cfg.scheduler.max_batch_tokens = 2048;
    cfg.scheduler.max_running = 128;
    auto made = Engine::Create(*Model().m->model, cfg);
    if (made.ok()) out = std::move(*made);
    return out;
  }();
  return e.get();
}

std::vector<int64_t> Tokens(int64_t n, int64_t vocab, uint64_t seed) {
  std::vector<int64_t> t(static_cast<size_t>(n));
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& v : t) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    v = static_cast<int64_t>((s >> 33) % static_cast<uint64_t>(vocab - 1000)) + 3;
  }
  return t;
}

GenerateParams Params(std::vector<int64_t> prompt, int32_t max_tokens, uint64_t id) {
  GenerateParams p;
  p.request_id = "bench-" + std::to_string(id);
  p.prompt = std::move(prompt);
  p.sampling.temperature = 0;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  return p;
}

bool Skip(benchmark::State& state) {
  if (!TheEngine()) {
    state.SkipWithError(Model().error.empty() ? "engine could not be created" : Model().error.c_str());
    return true;
  }
  return false;
}

uint64_t g_ids = 0;  // request ids only need to be unique within the run

void EngineDecode(benchmark::State& state) {
  if (Skip(state)) return;
  Engine& e = *TheEngine();
  const int64_t batch = state.range(0), prompt = 128, steps = 32;
  const int64_t V = e.model_config().vocab_size;
  int64_t tokens = 0;
  for (auto _ : state) {
    std::vector<std::shared_ptr<OutputStream>> streams;
    for (int64_t b = 0; b < batch; ++b) {
      const uint64_t id = ++g_ids;
      streams.push_back(*e.Submit(Params(Tokens(prompt, V, id), static_cast<int32_t>(steps + 1), id)));
    }
    // Decode phase only: from the moment every request has its first token.
    std::vector<int64_t> got(static_cast<size_t>(batch), 0);
    for (int64_t b = 0; b < batch; ++b) {
      while (got[b] == 0) {
        auto o = streams[b]->Pop(600000);
        for (const auto& c : o->choices) got[b] += static_cast<int64_t>(c.tokens.size());
      }
    }
    const auto t0 = Clock::now();
    int64_t decoded = 0;
    for (int64_t b = 0; b < batch; ++b) {
      while (true) {
        auto o = streams[b]->Pop(600000);
        for (const auto& c : o->choices) decoded += static_cast<int64_t>(c.tokens.size());
        if (o->final) break;
      }
    }
    state.SetIterationTime(std::chrono::duration<double>(Clock::now() - t0).count());
    tokens += decoded;
  }
  state.counters["tok_per_s"] = benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
  state.counters["batch"] = static_cast<double>(batch);
}
BENCHMARK(EngineDecode)->ArgName("batch")->Arg(1)->Arg(8)->Arg(32)->Arg(64)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(2);

double Ttft(Engine& e, std::vector<int64_t> prompt) {
  const auto t0 = Clock::now();
  auto s = *e.Submit(Params(std::move(prompt), 1, ++g_ids));
  while (true) {
    auto o = s->Pop(600000);
    if (o->final) break;
  }
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

void EngineTtft(benchmark::State& state) {
  if (Skip(state)) return;
  Engine& e = *TheEngine();
  const int64_t V = e.model_config().vocab_size;
  for (auto _ : state) state.SetIterationTime(Ttft(e, Tokens(state.range(0), V, ++g_ids)));
  state.counters["prompt_tok_per_s"] =
      benchmark::Counter(static_cast<double>(state.range(0) * state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(EngineTtft)->ArgName("prompt")->Arg(128)->Arg(512)->Arg(1024)->Arg(2048)->UseManualTime()->Unit(benchmark::kMillisecond);

void EnginePrefixCache(benchmark::State& state) {
  if (Skip(state)) return;
  Engine& e = *TheEngine();
  const int64_t V = e.model_config().vocab_size;
  const bool warm = state.range(0) == 1;
  const auto system = Tokens(1024, V, 424242);
  if (warm) Ttft(e, system);  // publishes the system prompt's blocks
  for (auto _ : state) {
    auto p = warm ? system : Tokens(1024, V, ++g_ids + 1000000);
    auto turn = Tokens(32, V, ++g_ids);
    p.insert(p.end(), turn.begin(), turn.end());
    state.SetIterationTime(Ttft(e, std::move(p)));
  }
}
BENCHMARK(EnginePrefixCache)->ArgName("warm")->Arg(0)->Arg(1)->UseManualTime()->Unit(benchmark::kMillisecond);

// A decode engine behind a real gRPC server in this process; the prefill side is the
// KvTransferClient. The decode engine gets its own model instance.
struct DecodeSide {
  std::unique_ptr<ModelInstance> m;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<AttentionService> service;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<KvUcxServer> ucx;
  std::string address;
};

DecodeSide* Decode() {
  static std::unique_ptr<DecodeSide> d = [] {
    auto out = std::make_unique<DecodeSide>();
    Loaded l = LoadModel();
    if (!l.m) return std::unique_ptr<DecodeSide>();
    out->m = std::move(l.m);
    EngineConfig cfg;
    cfg.kv_cache_bytes = 1ll << 30;
    cfg.worker_id = "decode";
    out->engine = std::move(*Engine::Create(*out->m->model, cfg));
    out->service = std::make_unique<AttentionService>(*out->engine, AttentionServiceOptions{});
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.SetMaxReceiveMessageSize(64 << 20);
    b.RegisterService(out->service.get());
    out->server = b.BuildAndStart();
    out->address = "127.0.0.1:" + std::to_string(port);
    auto u = KvUcxServer::Start(*out->engine, out->m->config().Fingerprint());
    if (u.ok()) out->ucx = std::move(*u);
    return out;
  }();
  return d.get();
}

void KvTransfer(benchmark::State& state) {
  if (Skip(state)) return;
  DecodeSide* d = Decode();
  if (!d) {
    state.SkipWithError("decode side could not be created");
    return;
  }
  const ModelConfig& mc = d->engine->model_config();
  auto ex = std::make_shared<KvExport>();
  ex->params = Params(Tokens(state.range(0), mc.vocab_size, 77), 1, 0);
  ex->first_tokens = {5};
  ex->first_logprobs = {SampledToken{}};
  SequenceSampler sampler(ex->params.sampling, mc.vocab_size, ex->params.prompt, 1, 0);
  ex->sampler_states = {sampler.SerializeState()};
  ex->num_positions = state.range(0);
  ex->layers = mc.num_hidden_layers;
  ex->latent_dim = mc.latent_dim();
  ex->data.assign(static_cast<size_t>(ex->layers * ex->num_positions * ex->latent_dim), 0.25f);
  const bool ucx = state.range(1) > 0;
  if (ucx && !d->ucx) {
    state.SkipWithError("UCX could not be started");
    return;
  }
  KvTransferClient client(mc.Fingerprint());
  KvUcxClient ucx_client(mc.Fingerprint(), 30000, static_cast<uint64_t>(state.range(1)) << 10);
  int64_t bytes = 0;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    auto r = ucx ? ucx_client.Push(d->address, d->ucx->address(), *ex) : client.Push(d->address, *ex);
    state.SetIterationTime(std::chrono::duration<double>(Clock::now() - t0).count());
    if (!r.ok()) {
      state.SkipWithError(std::string(r.status().message()).c_str());
      return;
    }
    bytes += r->bytes;
    // max_tokens 1: resuming finishes at once and frees the blocks.
    state.PauseTiming();
    auto s = d->engine->Resume(r->handle, "kv");
    if (s.ok()) {
      while (!(*s)->Pop(60000)->final) {
      }
    }
    state.ResumeTiming();
  }
  state.SetBytesProcessed(bytes);
  state.counters["MB_per_transfer"] = static_cast<double>(ex->data.size() * 4) / 1e6;
}
BENCHMARK(KvTransfer)
    ->ArgNames({"tokens", "ucx_piece_kib"})
    ->ArgsProduct({{128, 512, 2048, 8192}, {0, 64, 256, 1024, 4096}})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
