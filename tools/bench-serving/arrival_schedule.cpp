#include "tools/bench-serving/arrival_schedule.h"

#include "tools/bench-serving/deterministic_rng.h"

namespace dsv3::bench {

std::vector<double> PoissonArrivals(int64_t count, double rate_per_s, uint64_t seed) {
  std::vector<double> t;
  if (count <= 0) return t;
  t.reserve(static_cast<size_t>(count));
  // A stream of its own, so the prompts do not change with the rate.
  DeterministicRng rng(seed ^ 0x9e3779b97f4a7c15ULL);
  double now = 0;
  t.push_back(now);
  for (int64_t i = 1; i < count; ++i) {
    now += rng.Exponential(rate_per_s);
    t.push_back(now);
  }
  return t;
}

}  // namespace dsv3::bench
