#include "tools/bench-serving/latency_stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace dsv3::bench {

double Percentile(const std::vector<double>& sorted, double q) {
  if (sorted.size() == 1) return sorted[0];
  const double rank = std::clamp(q, 0.0, 100.0) / 100.0 * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - static_cast<double>(lo));
}

LatencySummary Summarize(std::vector<double> values) {
  LatencySummary s;
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  s.count = static_cast<int64_t>(values.size());
  s.mean = std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
  s.min = values.front();
  s.max = values.back();
  s.p50 = Percentile(values, 50);
  s.p90 = Percentile(values, 90);
  s.p99 = Percentile(values, 99);
  return s;
}

nlohmann::json LatencySummary::ToJson(double scale) const {
  return {{"count", count},       {"mean", mean * scale}, {"min", min * scale}, {"max", max * scale},
          {"p50", p50 * scale}, {"p90", p90 * scale},   {"p99", p99 * scale}};
}

}  // namespace dsv3::bench
