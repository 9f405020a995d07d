#include "tools/bench-serving/length_spec.h"

#include <cerrno>
#include <cstdlib>
#include <vector>

namespace dsv3::bench {

namespace {

bool ParsePositive(const std::string& s, int64_t* out) {
  if (s.empty() || s.size() > 12) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  *out = std::strtoll(s.c_str(), nullptr, 10);
  return *out >= 1;
}

}  // namespace

std::string LengthSpec::ToString() const {
  if (lo == hi) return "fixed:" + std::to_string(lo);
  return "uniform:" + std::to_string(lo) + ":" + std::to_string(hi);
}

std::optional<LengthSpec> ParseLengthSpec(const std::string& text, std::string* error) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t colon = text.find(':', start);
    parts.push_back(text.substr(start, colon == std::string::npos ? std::string::npos : colon - start));
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  LengthSpec s;
  if (parts.size() == 2 && parts[0] == "fixed" && ParsePositive(parts[1], &s.lo)) {
    s.hi = s.lo;
    return s;
  }
  if (parts.size() == 3 && parts[0] == "uniform" && ParsePositive(parts[1], &s.lo) && ParsePositive(parts[2], &s.hi) &&
      s.lo <= s.hi) {
    return s;
  }
  *error = "'" + text + "' is not fixed:N or uniform:A:B (1 <= A <= B)";
  return std::nullopt;
}

}  // namespace dsv3::bench
