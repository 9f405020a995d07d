// The figures of one run, computed from the per-request results as vLLM's
// benchmark_serving does: throughputs over the run's duration, TTFT and E2E per completed
// request, TPOT = (E2E - TTFT) / (output tokens - 1) per request with more than one
// output token, ITL over every gap between token-carrying chunks of completed requests.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "tools/bench-serving/latency_stats.h"
#include "tools/bench-serving/request_result.h"

namespace dsv3::bench {

struct BenchReport {
  int64_t completed = 0;
  int64_t failed = 0;
  int64_t cut_by_deadline = 0;
  int64_t not_sent = 0;  // never started: the count or the duration ran out first
  double duration_s = 0;
  int64_t input_tokens = 0;   // completed requests
  int64_t output_tokens = 0;
  int64_t requests_without_usage = 0;
  double request_throughput = 0;  // completed / duration
  double input_throughput = 0;
  double output_throughput = 0;
  double total_token_throughput = 0;
  LatencySummary ttft, tpot, itl, e2e;  // seconds
  std::vector<std::pair<std::string, int64_t>> errors;  // distinct reasons, most frequent first

  nlohmann::json ToJson() const;    // latencies in ms
  std::string ToTable(const std::string& title, const std::vector<std::pair<std::string, std::string>>& config) const;
};

// `planned`: requests the run was asked for; results beyond those sent are absent.
BenchReport BuildReport(const std::vector<RequestResult>& sent, int64_t planned, double duration_s);

}  // namespace dsv3::bench
