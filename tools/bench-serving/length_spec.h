// A length distribution given on the command line: "fixed:N" or "uniform:A:B" (inclusive).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "tools/bench-serving/deterministic_rng.h"

namespace dsv3::bench {

struct LengthSpec {
  int64_t lo = 1;
  int64_t hi = 1;

  int64_t Sample(DeterministicRng& rng) const { return rng.UniformInt(lo, hi); }
  double Mean() const { return 0.5 * static_cast<double>(lo + hi); }
  std::string ToString() const;
};

// Lengths must be >= 1 and A <= B; nullopt (with *error set) otherwise.
std::optional<LengthSpec> ParseLengthSpec(const std::string& text, std::string* error);

}  // namespace dsv3::bench
