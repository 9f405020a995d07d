// dsv3-bench-grpc: the serving benchmark without the gateway: streamed
// dsv3.attention.v1.AttentionService/Generate calls straight to one attention worker
// (role "both"), with the same seeded token-id prompts as `dsv3-bench --endpoint
// completions` and the same report (TTFT at the first message carrying token ids, ITL
// between such messages, E2E at the end of the stream, tokens from the final usage).
// Set beside dsv3-bench at the same concurrency, the difference is what the gateway costs
// (HTTP + JSON + SSE, tokenizer checks, detokenization, routing).
//
//   dsv3-bench-grpc --target HOST:PORT [--concurrency N] [--num-requests N] [--duration-s S]
//                   [--request-timeout-s S] [--prompt-len fixed:N|uniform:A:B]
//                   [--output-len fixed:N|uniform:A:B] [--seed S] [--warmup N] [--ignore-eos]
//                   [--json FILE]
//
// Closed loop: N threads with blocking streaming calls on one channel (HTTP/2, like the
// gateway's one channel per worker). Bounded by --num-requests and --duration-s (calls
// carry that deadline; SIGINT/SIGTERM cancel them and the report is still printed).
#include <grpcpp/grpcpp.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "proto/dsv3/attention.grpc.pb.h"
#include "tools/bench-serving/bench_report.h"
#include "tools/bench-serving/cli_args.h"
#include "tools/bench-serving/process_cpu.h"
#include "tools/bench-serving/workload.h"

namespace {

namespace attn = dsv3::attention::v1;
using Clock = std::chrono::steady_clock;
using namespace dsv3::bench;

constexpr const char* kUsage =
    "usage: dsv3-bench-grpc --target HOST:PORT [--concurrency N] [--num-requests N] [--duration-s S]\n"
    "                       [--request-timeout-s S] [--prompt-len fixed:N|uniform:A:B]\n"
    "                       [--output-len fixed:N|uniform:A:B] [--seed S] [--warmup N] [--ignore-eos] [--json FILE]\n"
    "Defaults: concurrency 1, 100 requests, 600 s, prompt fixed:256, output fixed:64, seed 0 (the same prompts\n"
    "as dsv3-bench --endpoint completions with the same seed).\n";

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Calls in flight, so that a signal can cancel them.
class ActiveCalls {
 public:
  void Add(grpc::ClientContext* c) {
    std::lock_guard<std::mutex> l(mu_);
    if (cancelled_) c->TryCancel();
    calls_.insert(c);
  }
  void Remove(grpc::ClientContext* c) {
    std::lock_guard<std::mutex> l(mu_);
    calls_.erase(c);
  }
  void CancelAll() {
    std::lock_guard<std::mutex> l(mu_);
    cancelled_ = true;
    for (auto* c : calls_) c->TryCancel();
  }
  bool cancelled() {
    std::lock_guard<std::mutex> l(mu_);
    return cancelled_;
  }

 private:
  std::mutex mu_;
  std::set<grpc::ClientContext*> calls_;
  bool cancelled_ = false;
};

struct Config {
  std::string target;
  int64_t concurrency = 1, num_requests = 100, warmup = 0;
  double duration_s = 600, request_timeout_s = 0;
  LengthSpec prompt_len{256, 256}, output_len{64, 64};
  uint64_t seed = 0;
  bool ignore_eos = false;
  std::string json_path;
};

RequestResult Call(attn::AttentionService::Stub& stub, ActiveCalls& active, const Config& cfg, const RequestSpec& spec,
                   const std::string& request_id, Clock::time_point t0, Clock::time_point hard_deadline) {
  RequestResult res;
  attn::GenerateRequest req;
  req.set_request_id(request_id);
  for (int64_t id : spec.prompt_ids) req.add_prompt_ids(id);
  req.mutable_sampling()->set_temperature(0);  // greedy, as dsv3-bench's default
  req.set_max_tokens(static_cast<int32_t>(spec.output_len));
  req.set_n(1);
  req.set_ignore_eos(cfg.ignore_eos);

  const Clock::time_point start = Clock::now();
  res.start_s = Seconds(start - t0);
  const auto timeout = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(cfg.request_timeout_s > 0 ? cfg.request_timeout_s : cfg.duration_s));
  const Clock::time_point deadline = std::min(hard_deadline, start + timeout);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::duration_cast<std::chrono::system_clock::duration>(deadline - start));
  active.Add(&ctx);
  auto reader = stub.Generate(&ctx, req);
  attn::GenerateResponse resp;
  Clock::time_point last_token{};
  bool finished = false;
  while (reader->Read(&resp)) {
    const Clock::time_point now = Clock::now();
    int64_t tokens = 0;
    for (const auto& c : resp.choices()) {
      tokens += c.token_ids_size();
      if (c.finish_reason() != attn::FINISH_NONE) finished = true;
    }
    if (tokens > 0) {
      if (res.ttft_s < 0) {
        res.ttft_s = Seconds(now - start);
      } else {
        res.itl_s.push_back(Seconds(now - last_token));
      }
      last_token = now;
      res.output_tokens += tokens;  // replaced by usage when the worker sends it
    }
    if (resp.has_usage()) {
      res.usage_reported = true;
      res.prompt_tokens = resp.usage().prompt_tokens();
      res.output_tokens = resp.usage().completion_tokens();
    }
  }
  const grpc::Status st = reader->Finish();
  active.Remove(&ctx);
  res.e2e_s = Seconds(Clock::now() - start);
  if (st.ok() && finished) {
    res.outcome = RequestOutcome::kCompleted;
  } else if (active.cancelled() || Clock::now() >= hard_deadline) {
    res.outcome = RequestOutcome::kCutByDeadline;
  } else {
    res.outcome = RequestOutcome::kFailed;
    res.error = st.ok() ? "stream ended without a finish reason"
                        : "gRPC " + std::to_string(static_cast<int>(st.error_code())) + ": " +
                              st.error_message().substr(0, 200);
  }
  return res;
}

bool ParseConfig(int argc, char** argv, Config* c, int* exit_code) {
  *exit_code = 2;
  std::string err;
  auto args = CliArgs::Parse(argc, argv,
                             {"target", "concurrency", "num-requests", "duration-s", "request-timeout-s", "prompt-len",
                              "output-len", "seed", "warmup", "json"},
                             {"ignore-eos", "help"}, &err);
  auto fail = [&](const std::string& m) {
    std::fprintf(stderr, "error: %s\n%s", m.c_str(), kUsage);
    return false;
  };
  if (!args) return fail(err);
  if (args->Has("help")) {
    std::fputs(kUsage, stdout);
    *exit_code = 0;
    return false;
  }
  c->target = args->Get("target");
  if (c->target.empty()) return fail("--target is required");
  auto conc = args->Int("concurrency", 1, 1, 4096, &err);
  auto num = args->Int("num-requests", 100, 1, 10000000, &err);
  auto warm = args->Int("warmup", 0, 0, 100000, &err);
  auto seed = args->Int("seed", 0, 0, INT64_MAX, &err);
  auto dur = args->Double("duration-s", 600, 0.001, 7 * 86400, &err);
  auto rto = args->Double("request-timeout-s", 0, 0.001, 7 * 86400, &err);
  if (!conc || !num || !warm || !seed || !dur || !rto) return fail(err);
  c->concurrency = *conc;
  c->num_requests = *num;
  c->warmup = *warm;
  c->seed = static_cast<uint64_t>(*seed);
  c->duration_s = *dur;
  c->request_timeout_s = *rto;
  if (args->Has("prompt-len")) {
    auto s = ParseLengthSpec(args->Get("prompt-len"), &err);
    if (!s) return fail("--prompt-len: " + err);
    c->prompt_len = *s;
  }
  if (args->Has("output-len")) {
    auto s = ParseLengthSpec(args->Get("output-len"), &err);
    if (!s) return fail("--output-len: " + err);
    c->output_len = *s;
  }
  c->ignore_eos = args->Has("ignore-eos");
  c->json_path = args->Get("json");
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  int exit_code = 2;
  if (!ParseConfig(argc, argv, &cfg, &exit_code)) return exit_code;

  // Signals go to one thread, which cancels the calls in flight.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  ActiveCalls active;
  std::thread([&active, sigs]() {
    int sig = 0;
    if (sigwait(&sigs, &sig) == 0) {
      std::fprintf(stderr, "dsv3-bench-grpc: signal %d, stopping (the report follows)\n", sig);
      active.CancelAll();
    }
  }).detach();

  WorkloadOptions w;
  w.count = cfg.num_requests;
  w.prompt_len = cfg.prompt_len;
  w.output_len = cfg.output_len;
  w.seed = cfg.seed;
  w.kind = PromptKind::kTokenIds;
  const std::vector<RequestSpec> specs = BuildWorkload(w);
  w.count = cfg.warmup;
  w.seed = cfg.seed ^ 0x5bd1e995u;  // dsv3-bench's warm-up prompts
  const std::vector<RequestSpec> warm_specs = BuildWorkload(w);

  grpc::ChannelArguments ch_args;
  ch_args.SetMaxReceiveMessageSize(64 << 20);
  auto channel = grpc::CreateCustomChannel(cfg.target, grpc::InsecureChannelCredentials(), ch_args);
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
    std::fprintf(stderr, "error: cannot connect to %s within 10 s\n", cfg.target.c_str());
    return 1;
  }
  auto stub = attn::AttentionService::NewStub(channel);
  const std::string id_prefix = "bench-grpc-" + std::to_string(getpid()) + "-";

  Clock::time_point t0 = Clock::now();
  const auto dur = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(cfg.duration_s));
  int64_t warm_ok = 0;
  for (size_t i = 0; i < warm_specs.size() && !active.cancelled(); ++i) {
    const RequestResult r = Call(*stub, active, cfg, warm_specs[i], id_prefix + "warm-" + std::to_string(i), t0, t0 + dur);
    if (r.outcome == RequestOutcome::kCompleted) ++warm_ok;
    else if (!r.error.empty()) std::fprintf(stderr, "dsv3-bench-grpc: warm-up request failed: %s\n", r.error.c_str());
  }
  if (!warm_specs.empty()) {
    std::fprintf(stderr, "dsv3-bench-grpc: warm-up: %lld of %zu requests completed\n", static_cast<long long>(warm_ok),
                 warm_specs.size());
  }

  const double cpu0 = ProcessCpuSeconds();
  t0 = Clock::now();
  const Clock::time_point hard_deadline = t0 + dur;
  std::vector<RequestResult> results(specs.size());
  std::vector<char> started(specs.size(), 0);
  std::atomic<size_t> next{0};
  std::vector<std::thread> threads;
  for (int64_t c = 0; c < std::min<int64_t>(cfg.concurrency, cfg.num_requests); ++c) {
    threads.emplace_back([&]() {
      while (!active.cancelled() && Clock::now() < hard_deadline) {
        const size_t i = next.fetch_add(1);
        if (i >= specs.size()) return;
        started[i] = 1;
        results[i] = Call(*stub, active, cfg, specs[i], id_prefix + std::to_string(i), t0, hard_deadline);
      }
    });
  }
  for (auto& t : threads) t.join();
  const double duration = Seconds(Clock::now() - t0);
  const double client_cpu = ProcessCpuSeconds() - cpu0;

  std::vector<RequestResult> sent;
  for (size_t i = 0; i < results.size(); ++i) {
    if (started[i]) sent.push_back(std::move(results[i]));
  }
  const BenchReport report = BuildReport(sent, cfg.num_requests, duration);
  std::vector<std::pair<std::string, std::string>> desc = {
      {"Target", cfg.target + " (AttentionService/Generate)"},
      {"Load", "closed loop, concurrency " + std::to_string(cfg.concurrency)},
      {"Prompt / output length",
       cfg.prompt_len.ToString() + " / " + cfg.output_len.ToString() + (cfg.ignore_eos ? " (ignore_eos)" : "")},
      {"Requests planned / seed", std::to_string(cfg.num_requests) + " / " + std::to_string(cfg.seed)}};
  char cpu_line[64];
  std::snprintf(cpu_line, sizeof(cpu_line), "%.2f", client_cpu);
  desc.push_back({"Client CPU during the run (s)", cpu_line});
  std::fputs(report.ToTable("gRPC Generate Benchmark Result", desc).c_str(), stdout);
  std::fflush(stdout);
  if (!cfg.json_path.empty()) {
    nlohmann::json j = report.ToJson();
    j["config"] = {{"target", cfg.target},
                   {"concurrency", cfg.concurrency},
                   {"num_requests", cfg.num_requests},
                   {"duration_s_limit", cfg.duration_s},
                   {"prompt_len", cfg.prompt_len.ToString()},
                   {"output_len", cfg.output_len.ToString()},
                   {"seed", cfg.seed},
                   {"warmup", cfg.warmup},
                   {"ignore_eos", cfg.ignore_eos}};
    j["client_cpu_s"] = client_cpu;
    j["warmup_completed"] = warm_ok;
    std::ofstream f(cfg.json_path);
    f << j.dump(2) << "\n";
    if (!f) {
      std::fprintf(stderr, "error: cannot write %s\n", cfg.json_path.c_str());
      return 1;
    }
  }
  return report.completed > 0 ? 0 : 1;
}
