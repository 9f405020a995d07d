// A seeded generator whose draws are the same on every platform and standard library
// (std::*_distribution are implementation-defined): the same --seed gives the same
// prompts, lengths and arrival times everywhere.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>

namespace dsv3::bench {

class DeterministicRng {
 public:
  explicit DeterministicRng(uint64_t seed) : engine_(seed) {}

  // Uniform in [0, 1).
  double Uniform01() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }

  // Uniform integer in [lo, hi] (inclusive); lo when hi <= lo.
  int64_t UniformInt(int64_t lo, int64_t hi) {
    if (hi <= lo) return lo;
    const uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
    return lo + static_cast<int64_t>(engine_() % span);  // bias < span / 2^64: negligible here
  }

  // Exponential with the given rate (mean 1 / rate).
  double Exponential(double rate) { return -std::log1p(-Uniform01()) / rate; }

 private:
  std::mt19937_64 engine_;  // its output sequence is fixed by the standard
};

}  // namespace dsv3::bench
