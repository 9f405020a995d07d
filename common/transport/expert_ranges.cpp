#include <algorithm>
#include <cstdlib>

#include "common/transport/expert_channel.h"

namespace dsv3 {

StatusOr<std::vector<int32_t>> ParseExpertRanges(const std::string& spec, int64_t n) {
  std::vector<int32_t> out;
  size_t p = 0;
  auto bad = [&](const std::string& why) { return InvalidArgument("experts", StrCat("bad expert list '", spec, "': ", why)); };
  if (spec.empty()) return bad("empty");
  while (p < spec.size()) {
    size_t q = spec.find(',', p);
    if (q == std::string::npos) q = spec.size();
    const std::string item = spec.substr(p, q - p);
    const size_t dash = item.find('-');
    char* end = nullptr;
    const long a = std::strtol(item.c_str(), &end, 10);
    long b = a;
    if (end == item.c_str()) return bad("'" + item + "' is not a number or range");
    if (dash != std::string::npos) {
      const char* s = item.c_str() + dash + 1;
      b = std::strtol(s, &end, 10);
      if (end == s || *end != '\0') return bad("'" + item + "' is not a range");
    } else if (*end != '\0') {
      return bad("'" + item + "' is not a number");
    }
    if (a < 0 || b < a || b >= n) return bad(StrCat("'", item, "' outside [0, ", n, ")"));
    for (long e = a; e <= b; ++e) out.push_back(static_cast<int32_t>(e));
    p = q + 1;
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::string FormatExpertRanges(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size();) {
    size_t j = i;
    while (j + 1 < ids.size() && ids[j + 1] == ids[j] + 1) ++j;
    StrAppend(&s, s.empty() ? "" : ",", ids[i]);
    if (j > i) StrAppend(&s, "-", ids[j]);
    i = j + 1;
  }
  return s;
}

}  // namespace dsv3
