// dsv3-bench: a serving benchmark client for dsv3's gateway (or any OpenAI-compatible
// server), after vLLM's benchmark_serving and SGLang's bench_serving. Every request is
// streamed; TTFT, TPOT, ITL and E2E are measured per request on the client and reported
// with throughput as a table on stdout and, with --json, as JSON.
//
// One thread runs every request as a coroutine on one io_context (the client must not
// compete with the server for cores more than it has to); connections are kept alive and
// reused (connection_pool.h). Bounded: --num-requests, and --duration-s after which nothing
// starts and requests in flight are cancelled; SIGINT/SIGTERM end the run the same way and
// the report is still printed. Exit status: 0 when at least one request completed, 1 when
// none did, 2 for bad arguments.
#include <csignal>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <utility>  // before Asio (Boost 1.74's awaitable.hpp needs std::exchange)
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "tools/bench-serving/arrival_schedule.h"
#include "tools/bench-serving/bench_options.h"
#include "tools/bench-serving/bench_report.h"
#include "tools/bench-serving/connection_pool.h"
#include "tools/bench-serving/openai_request_body.h"
#include "tools/bench-serving/process_cpu.h"
#include "tools/bench-serving/streaming_client.h"
#include "tools/bench-serving/workload.h"

namespace {

namespace net = boost::asio;
using Clock = std::chrono::steady_clock;
using dsv3::bench::RequestResult;

// State of one measured run, shared by the coroutines (all on one thread).
struct Run {
  dsv3::bench::StreamingClient* client = nullptr;
  const std::vector<std::string>* bodies = nullptr;
  std::vector<RequestResult> results;
  std::vector<char> started;
  size_t next = 0;
  Clock::time_point hard_deadline;
  int64_t inflight = 0;
  int64_t cap = 0;  // open loop: most requests in flight (0: none)
  int tasks = 0;    // coroutines still running; the last one ends the signal wait
  std::unique_ptr<net::steady_timer> arrival_timer, slot_timer;
  std::unique_ptr<net::signal_set> signals;

  bool Stopped() const { return client->interrupted() || Clock::now() >= hard_deadline; }
  void TaskDone() {
    if (--tasks == 0) signals->cancel();
  }
};

void LogException(std::exception_ptr e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    std::fprintf(stderr, "dsv3-bench: internal error: %s\n", x.what());
  }
}

// Closed loop: one of N clients, each sending its next request when the last one ended.
net::awaitable<void> ClosedLoopClient(Run& r) {
  while (r.next < r.bodies->size() && !r.Stopped()) {
    const size_t i = r.next++;
    r.started[i] = 1;
    r.results[i] = co_await r.client->Send((*r.bodies)[i], r.hard_deadline);
  }
  r.TaskDone();
}

net::awaitable<void> OneRequest(Run& r, size_t i) {
  r.results[i] = co_await r.client->Send((*r.bodies)[i], r.hard_deadline);
  --r.inflight;
  r.slot_timer->cancel();
  r.TaskDone();
}

// Open loop: requests leave at their Poisson arrival times (later when the cap is reached).
net::awaitable<void> Dispatcher(Run& r, std::vector<double> arrivals, Clock::time_point t0) {
  auto ex = co_await net::this_coro::executor;
  boost::system::error_code ec;
  for (size_t i = 0; i < r.bodies->size(); ++i) {
    const auto at = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(arrivals[i]));
    if (at >= r.hard_deadline) break;
    r.arrival_timer->expires_at(at);
    co_await r.arrival_timer->async_wait(net::redirect_error(net::use_awaitable, ec));
    while (r.cap > 0 && r.inflight >= r.cap && !r.Stopped()) {
      r.slot_timer->expires_at(r.hard_deadline);
      co_await r.slot_timer->async_wait(net::redirect_error(net::use_awaitable, ec));
    }
    if (r.Stopped()) break;
    r.started[i] = 1;
    ++r.inflight;
    ++r.tasks;
    net::co_spawn(ex, OneRequest(r, i), LogException);
  }
  r.TaskDone();
}

net::awaitable<void> Warmup(dsv3::bench::StreamingClient& client, const std::vector<std::string>& bodies,
                            Clock::time_point deadline, int64_t* ok) {
  for (const auto& b : bodies) {
    const RequestResult res = co_await client.Send(b, deadline);
    if (res.outcome == dsv3::bench::RequestOutcome::kCompleted) {
      ++*ok;
    } else if (!res.error.empty()) {
      std::fprintf(stderr, "dsv3-bench: warm-up request failed: %s\n", res.error.c_str());
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace dsv3::bench;
  int exit_code = 2;
  auto opts = ParseBenchOptions(argc, argv, &exit_code);
  if (!opts) return exit_code;
  const BenchOptions& o = *opts;
  std::signal(SIGPIPE, SIG_IGN);

  WorkloadOptions w;
  w.count = o.num_requests;
  w.prompt_len = o.prompt_len;
  w.output_len = o.output_len;
  w.seed = o.seed;
  w.kind = o.endpoint == Endpoint::kChat ? PromptKind::kText : PromptKind::kTokenIds;
  std::vector<std::string> bodies, warm_bodies;
  for (const auto& spec : BuildWorkload(w)) bodies.push_back(BuildRequestBody(o, spec));
  w.count = o.warmup;
  w.seed = o.seed ^ 0x5bd1e995u;  // not the measured prompts (no prefix-cache head start)
  for (const auto& spec : BuildWorkload(w)) warm_bodies.push_back(BuildRequestBody(o, spec));

  net::io_context ioc(1);
  net::ip::tcp::resolver resolver(ioc);
  boost::system::error_code ec;
  auto endpoints = resolver.resolve(o.url.host, o.url.port, ec);
  if (ec) {
    std::fprintf(stderr, "error: cannot resolve %s: %s\n", o.url.host.c_str(), ec.message().c_str());
    return 1;
  }
  ConnectionPool pool(ioc.get_executor(), endpoints, o.keep_alive);
  StreamingClientOptions co;
  co.host_header = o.url.HostHeader();
  co.path = EndpointPath(o);
  co.api_key = o.api_key;
  co.request_timeout = std::chrono::duration<double>(o.request_timeout_s);
  StreamingClient client(pool, co, Clock::now());

  Run r;
  r.client = &client;
  r.bodies = &bodies;
  r.results.resize(bodies.size());
  r.started.assign(bodies.size(), 0);
  r.arrival_timer = std::make_unique<net::steady_timer>(ioc);
  r.slot_timer = std::make_unique<net::steady_timer>(ioc);
  r.signals = std::make_unique<net::signal_set>(ioc, SIGINT, SIGTERM);
  r.signals->async_wait([&](const boost::system::error_code& e, int sig) {
    if (e) return;
    std::fprintf(stderr, "dsv3-bench: signal %d, stopping (the report follows)\n", sig);
    client.Interrupt();
    r.arrival_timer->cancel();
    r.slot_timer->cancel();
  });

  // Warm-up: sequential, bounded by the same duration, not measured.
  int64_t ok = 0;  // outlive a warm-up cut short by a signal (its coroutine ends later)
  bool warm_done = false;
  if (!warm_bodies.empty()) {
    const auto warm_deadline =
        Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.duration_s));
    net::co_spawn(ioc, Warmup(client, warm_bodies, warm_deadline, &ok), [&](std::exception_ptr e) {
      LogException(e);
      warm_done = true;
    });
    while (!warm_done && !client.interrupted()) ioc.run_one();
    std::fprintf(stderr, "dsv3-bench: warm-up: %lld of %zu requests completed\n", static_cast<long long>(ok),
                 warm_bodies.size());
  }

  const double cpu0 = ProcessCpuSeconds();
  const Clock::time_point t0 = Clock::now();
  client.set_t0(t0);
  r.hard_deadline = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.duration_s));
  if (o.request_rate > 0) {
    r.cap = o.concurrency;
    r.tasks = 1;
    net::co_spawn(ioc, Dispatcher(r, PoissonArrivals(o.num_requests, o.request_rate, o.seed), t0), LogException);
  } else {
    const int64_t n = std::min<int64_t>(o.concurrency, o.num_requests);
    r.tasks = static_cast<int>(n);
    for (int64_t c = 0; c < n; ++c) net::co_spawn(ioc, ClosedLoopClient(r), LogException);
  }
  ioc.run();
  const double duration = std::chrono::duration<double>(Clock::now() - t0).count();
  const double client_cpu = ProcessCpuSeconds() - cpu0;

  std::vector<RequestResult> sent;
  for (size_t i = 0; i < r.results.size(); ++i) {
    if (r.started[i]) sent.push_back(std::move(r.results[i]));
  }
  const BenchReport report = BuildReport(sent, o.num_requests, duration);
  auto config = o.Describe();
  config.push_back({"Connections opened", std::to_string(pool.opened()) + (o.keep_alive ? " (keep-alive)" : "")});
  char cpu_line[64];
  std::snprintf(cpu_line, sizeof(cpu_line), "%.2f", client_cpu);
  config.push_back({"Client CPU during the run (s)", cpu_line});
  std::fputs(report.ToTable("Serving Benchmark Result", config).c_str(), stdout);
  std::fflush(stdout);

  if (!o.json_path.empty()) {
    nlohmann::json j = report.ToJson();
    nlohmann::json c;
    c["url"] = o.url.ToString();
    c["model"] = o.model;
    c["endpoint"] = o.endpoint == Endpoint::kChat ? "chat" : "completions";
    c["concurrency"] = o.concurrency;
    c["request_rate"] = o.request_rate;
    c["num_requests"] = o.num_requests;
    c["duration_s_limit"] = o.duration_s;
    c["prompt_len"] = o.prompt_len.ToString();
    c["output_len"] = o.output_len.ToString();
    c["seed"] = o.seed;
    c["warmup"] = o.warmup;
    c["temperature"] = o.temperature;
    c["ignore_eos"] = o.ignore_eos;
    c["keep_alive"] = o.keep_alive;
    j["config"] = c;
    j["connections_opened"] = pool.opened();
    j["client_cpu_s"] = client_cpu;
    j["warmup_completed"] = ok;
    std::ofstream f(o.json_path);
    f << j.dump(2) << "\n";
    if (!f) {
      std::fprintf(stderr, "error: cannot write %s\n", o.json_path.c_str());
      return 1;
    }
  }
  return report.completed > 0 ? 0 : 1;
}
