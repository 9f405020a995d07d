#include "services/gateway/api_keys.h"

#include <algorithm>
#include <cctype>
#include <fstream>

namespace dsv3::gateway {

namespace {
std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) s.remove_suffix(1);
  return s;
}
}  // namespace

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  // Walk the longer length always so a prefix match is not faster than a miss.
  const size_t n = std::max(a.size(), b.size());
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

void ApiKeys::Add(std::string_view key) {
  key = Trim(key);
  if (key.empty() || key.front() == '#') return;
  keys_.emplace_back(key);
}

StatusOr<ApiKeys> ApiKeys::Load(const std::vector<std::string>& flag_keys, std::string_view env_list,
                                const std::string& file) {
  ApiKeys k;
  for (const auto& key : flag_keys) k.Add(key);
  size_t start = 0;
  while (start <= env_list.size() && !env_list.empty()) {
    const size_t comma = env_list.find(',', start);
    k.Add(env_list.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  if (!file.empty()) {
    std::ifstream in(file);
    if (!in) return NotFound("gateway", StrCat("cannot read --api-key-file ", file));
    std::string line;
    while (std::getline(in, line)) k.Add(line);
  }
  return k;
}

bool ApiKeys::Authorize(std::string_view authorization) const {
  if (keys_.empty()) return true;
  authorization = Trim(authorization);
  constexpr std::string_view kBearer = "bearer ";
  if (authorization.size() <= kBearer.size()) return false;
  for (size_t i = 0; i < kBearer.size(); ++i) {
    if (static_cast<char>(std::tolower(static_cast<unsigned char>(authorization[i]))) != kBearer[i]) return false;
  }
  const std::string_view presented = Trim(authorization.substr(kBearer.size()));
  bool ok = false;
  for (const auto& key : keys_) ok |= ConstantTimeEquals(presented, key);  // no early exit
  return ok;
}

}  // namespace dsv3::gateway
