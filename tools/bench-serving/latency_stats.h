// Mean and percentiles of a sample. Percentiles interpolate linearly between the two
// nearest ranks (numpy's default, which vLLM's and SGLang's benchmarks use).
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

namespace dsv3::bench {

struct LatencySummary {
  int64_t count = 0;
  double mean = 0, min = 0, max = 0, p50 = 0, p90 = 0, p99 = 0;  // 0 when count is 0

  nlohmann::json ToJson(double scale) const;  // every figure times scale (1000: ms)
};

// q in [0, 100]; `sorted` ascending and non-empty.
double Percentile(const std::vector<double>& sorted, double q);

LatencySummary Summarize(std::vector<double> values);

}  // namespace dsv3::bench
