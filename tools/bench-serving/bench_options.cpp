#include "tools/bench-serving/bench_options.h"

#include <cstdio>

#include "tools/bench-serving/cli_args.h"

namespace dsv3::bench {

namespace {

constexpr const char* kUsage =
    "usage: dsv3-bench --url http://HOST:PORT --model NAME [--api-key K]\n"
    "                  [--endpoint completions|chat] (--concurrency N | --request-rate R [--concurrency CAP])\n"
    "                  [--num-requests N] [--duration-s S] [--request-timeout-s S]\n"
    "                  [--prompt-len fixed:N|uniform:A:B] [--output-len fixed:N|uniform:A:B]\n"
    "                  [--seed S] [--warmup N] [--temperature T] [--ignore-eos] [--no-keep-alive] [--json FILE]\n"
    "Streams every request (stream_options.include_usage) and reports TTFT, TPOT, ITL, E2E and throughput.\n"
    "completions: random token-id prompts of exactly the drawn length; chat: random words (~1 token each).\n"
    "--concurrency N: N clients each sending its next request when the last one ended (closed loop).\n"
    "--request-rate R: requests sent at Poisson arrival times (R/s, seeded), at most CAP in flight.\n"
    "--duration-s: hard bound on the run; requests still running then are cancelled and reported.\n"
    "Defaults: completions, concurrency 1, 100 requests, 600 s, prompt fixed:256, output fixed:64, seed 0.\n";

}  // namespace

std::vector<std::pair<std::string, std::string>> BenchOptions::Describe() const {
  std::vector<std::pair<std::string, std::string>> d;
  d.push_back({"URL", url.ToString()});
  d.push_back({"Model", model});
  d.push_back({"Endpoint", endpoint == Endpoint::kChat ? "/v1/chat/completions" : "/v1/completions"});
  std::string mode;
  if (request_rate > 0) {
    char buf[96];
    std::snprintf(buf, sizeof(buf), "Poisson %.3g req/s", request_rate);
    mode = buf;
    mode += concurrency > 0 ? ", at most " + std::to_string(concurrency) + " in flight" : ", no cap";
  } else {
    mode = "closed loop, concurrency " + std::to_string(concurrency);
  }
  d.push_back({"Load", mode});
  d.push_back({"Prompt / output length", prompt_len.ToString() + " / " + output_len.ToString() +
                                             (ignore_eos ? " (ignore_eos)" : "")});
  d.push_back({"Requests planned / seed", std::to_string(num_requests) + " / " + std::to_string(seed)});
  return d;
}

std::optional<BenchOptions> ParseBenchOptions(int argc, char** argv, int* exit_code) {
  *exit_code = 2;
  std::string err;
  auto args = CliArgs::Parse(argc, argv,
                             {"url", "api-key", "model", "endpoint", "concurrency", "request-rate", "num-requests",
                              "duration-s", "request-timeout-s", "prompt-len", "output-len", "seed", "warmup",
                              "temperature", "json"},
                             {"ignore-eos", "no-keep-alive", "help"}, &err);
  auto fail = [&](const std::string& msg) -> std::optional<BenchOptions> {
    std::fprintf(stderr, "error: %s\n%s", msg.c_str(), kUsage);
    return std::nullopt;
  };
  if (!args) return fail(err);
  if (args->Has("help")) {
    std::fputs(kUsage, stdout);
    *exit_code = 0;
    return std::nullopt;
  }
  BenchOptions o;
  if (!args->Has("url")) return fail("--url is required");
  if (!args->Has("model")) return fail("--model is required");
  auto url = ParseHttpUrl(args->Get("url"), &err);
  if (!url) return fail(err);
  o.url = *url;
  o.model = args->Get("model");
  o.api_key = args->Get("api-key");
  const std::string ep = args->Get("endpoint", "completions");
  if (ep == "chat") o.endpoint = Endpoint::kChat;
  else if (ep != "completions") return fail("--endpoint must be completions or chat");
  auto conc = args->Int("concurrency", 0, 1, 100000, &err);
  auto rate = args->Double("request-rate", 0, 1e-6, 1e6, &err);
  auto num = args->Int("num-requests", 100, 1, 10000000, &err);
  auto dur = args->Double("duration-s", 600, 0.001, 7 * 86400, &err);
  auto rto = args->Double("request-timeout-s", 0, 0.001, 7 * 86400, &err);
  auto seed = args->Int("seed", 0, 0, INT64_MAX, &err);
  auto warm = args->Int("warmup", 0, 0, 100000, &err);
  auto temp = args->Double("temperature", 0, 0, 100, &err);
  if (!conc || !rate || !num || !dur || !rto || !seed || !warm || !temp) return fail(err);
  o.concurrency = *conc;
  o.request_rate = *rate;
  if (o.request_rate == 0 && o.concurrency == 0) o.concurrency = 1;
  o.num_requests = *num;
  o.duration_s = *dur;
  o.request_timeout_s = *rto > 0 ? *rto : *dur;
  o.seed = static_cast<uint64_t>(*seed);
  o.warmup = *warm;
  o.temperature = *temp;
  if (args->Has("prompt-len")) {
    auto s = ParseLengthSpec(args->Get("prompt-len"), &err);
    if (!s) return fail("--prompt-len: " + err);
    o.prompt_len = *s;
  }
  if (args->Has("output-len")) {
    auto s = ParseLengthSpec(args->Get("output-len"), &err);
    if (!s) return fail("--output-len: " + err);
    o.output_len = *s;
  }
  o.ignore_eos = args->Has("ignore-eos");
  o.keep_alive = !args->Has("no-keep-alive");
  o.json_path = args->Get("json");
  return o;
}

}  // namespace dsv3::bench
