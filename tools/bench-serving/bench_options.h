// dsv3-bench's command line.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tools/bench-serving/http_url.h"
#include "tools/bench-serving/length_spec.h"

namespace dsv3::bench {

enum class Endpoint { kCompletions, kChat };

struct BenchOptions {
  HttpUrl url;
  std::string api_key;
  std::string model;
  Endpoint endpoint = Endpoint::kCompletions;
  int64_t concurrency = 0;   // closed loop with N clients; with --request-rate: a cap (0: none)
  double request_rate = 0;   // open loop, Poisson arrivals; 0: closed loop
  int64_t num_requests = 100;
  double duration_s = 600;   // hard bound: nothing starts after it, what runs is cancelled
  double request_timeout_s = 0;  // per request; 0: the duration
  LengthSpec prompt_len{256, 256};
  LengthSpec output_len{64, 64};
  uint64_t seed = 0;
  int64_t warmup = 0;        // sequential requests before the measured run, not counted
  double temperature = 0;    // greedy by default (as vLLM's benchmark)
  bool ignore_eos = false;
  bool keep_alive = true;    // --no-keep-alive: a new connection per request
  std::string json_path;

  std::vector<std::pair<std::string, std::string>> Describe() const;  // for the report
};

// nullopt after printing the problem (or the usage, for --help: *exit_code 0).
std::optional<BenchOptions> ParseBenchOptions(int argc, char** argv, int* exit_code);

}  // namespace dsv3::bench
