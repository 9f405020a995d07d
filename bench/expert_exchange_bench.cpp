// Dispatch + combine round trip of one MoE layer without expert compute (workers run with
// --skip-compute), gRPC vs UCX on loopback, for 1..1024 tokens at hidden 512 and 7168.
// Needs DSV3_BENCH_EXCHANGE_MODELS="hidden:dir,hidden:dir" (bench/run.sh makes them).
// Reports p50/p90/p99 latency and the GB/s moved (both directions).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <random>

#include "child_process.h"
#include "common/checkpoint/checkpoint.h"
#include "common/transport/expert_cluster.h"
#include "common/util/allocator_tuning.h"

namespace {

using namespace dsv3;

// Same allocator settings as the services (this binary has no main of its own).
const bool kTuned = (dsv3::TuneAllocatorForLargeBuffers(), true);

struct Setup {
  std::unique_ptr<Checkpoint> ckpt;
  std::vector<testing::ChildProcess> workers;
  std::unique_ptr<ExpertDispatcher> dispatcher;
  std::string error;
};

std::string ModelFor(int hidden) {
  const char* env = std::getenv("DSV3_BENCH_EXCHANGE_MODELS");
  if (!env) return "";
  std::string s = env;
  size_t p = 0;
  while (p < s.size()) {
    size_t q = s.find(',', p);
    if (q == std::string::npos) q = s.size();
    const std::string item = s.substr(p, q - p);
    const size_t c = item.find(':');
    if (c != std::string::npos && std::atoi(item.substr(0, c).c_str()) == hidden) return item.substr(c + 1);
    p = q + 1;
  }
  return "";
}

Setup& Get(int hidden, const std::string& transport) {
  static std::map<std::pair<int, std::string>, Setup> setups;
  auto key = std::make_pair(hidden, transport);
  auto it = setups.find(key);
  if (it != setups.end()) return it->second;
  Setup& s = setups[key];
  const std::string dir = ModelFor(hidden);
  if (dir.empty()) {
    s.error = "set DSV3_BENCH_EXCHANGE_MODELS=512:DIR,7168:DIR (bench/run.sh does)";
    return s;
  }
  auto ck = Checkpoint::Open(dir);
  if (!ck.ok()) {
    s.error = std::string(ck.status().message());
    return s;
  }
  s.ckpt = std::move(*ck);
  std::vector<std::string> addrs;
  for (const char* slice : {"0-127", "128-255"}) {
    std::string a;
    s.workers.push_back(testing::StartExpertWorker(dir, slice, transport, &a, "127.0.0.1:0", {"--skip-compute"}));
    if (a.empty()) {
      s.error = "expert worker did not start";
      return s;
    }
    addrs.push_back(a);
  }
  ExpertClusterOptions opts;
  opts.transport = *ParseExpertTransport(transport);
  auto d = ConnectExpertWorkers(s.ckpt->config(), addrs, opts);
  if (!d.ok()) {
    s.error = std::string(d.status().message());
    return s;
  }
  s.dispatcher = std::move(*d);
  return s;
}

void BM_ExpertExchange(benchmark::State& state, const std::string& transport) {
  const int hidden = static_cast<int>(state.range(0));
  const int64_t tokens = state.range(1);
  Setup& s = Get(hidden, transport);
  if (!s.dispatcher) return state.SkipWithError(s.error.c_str());
  const ModelConfig& cfg = s.ckpt->config();
  int64_t moe_layer = 0;
  while (!cfg.IsMoeLayer(moe_layer)) ++moe_layer;
  RoutingResult r;
  r.tokens = tokens;
  r.k = cfg.num_experts_per_tok;
  std::mt19937 rng(1);
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<int32_t> all(cfg.n_routed_experts);
    for (int32_t e = 0; e < cfg.n_routed_experts; ++e) all[e] = e;
    std::shuffle(all.begin(), all.end(), rng);
    for (int64_t k = 0; k < r.k; ++k) {
      r.experts.push_back(all[k]);
      r.weights.push_back(0.1f);
    }
  }
  std::vector<float> x(static_cast<size_t>(tokens * hidden), 0.5f), out(x.size());
  std::vector<double> lat;
  const uint64_t sent0 = s.dispatcher->stats().bytes_sent, recv0 = s.dispatcher->stats().bytes_received;
  for (auto _ : state) {
    Status st = s.dispatcher->Dispatch(moe_layer, x.data(), r);
    if (st.ok()) st = s.dispatcher->Combine(out.data());
    if (!st.ok()) return state.SkipWithError(std::string(st.message()).c_str());
    lat.push_back(s.dispatcher->stats().last_seconds);
  }
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double p) { return lat[std::min(lat.size() - 1, static_cast<size_t>(p * lat.size()))] * 1e6; };
  state.counters["p50_us"] = pct(0.50);
  state.counters["p90_us"] = pct(0.90);
  state.counters["p99_us"] = pct(0.99);
  const double bytes = static_cast<double>(s.dispatcher->stats().bytes_sent - sent0 + s.dispatcher->stats().bytes_received - recv0);
  state.counters["GB/s"] = benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsRate);
}

void BM_ExchangeGrpc(benchmark::State& s) { BM_ExpertExchange(s, "grpc"); }
void BM_ExchangeUcx(benchmark::State& s) { BM_ExpertExchange(s, "ucx"); }
BENCHMARK(BM_ExchangeGrpc)->ArgsProduct({{512, 7168}, {1, 16, 128, 1024}})->MinWarmUpTime(0.3)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_ExchangeUcx)->ArgsProduct({{512, 7168}, {1, 16, 128, 1024}})->MinWarmUpTime(0.3)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
