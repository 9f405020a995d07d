// When each request is sent in --request-rate mode: a Poisson process (exponential gaps
// with mean 1/rate, seeded), as vLLM's benchmark_serving with burstiness 1.
#pragma once

#include <cstdint>
#include <vector>

namespace dsv3::bench {

// Offsets in seconds from the start, non-decreasing, one per request; the first is 0.
std::vector<double> PoissonArrivals(int64_t count, double rate_per_s, uint64_t seed);

}  // namespace dsv3::bench
