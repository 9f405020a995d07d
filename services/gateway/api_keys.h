// API keys: `Authorization: Bearer K` checked against the configured set (flags, env
// DSV3_API_KEYS comma list, a file with one key per line). No keys configured = auth off.
// Comparison takes the same time whichever byte differs and whichever key matches.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace dsv3::gateway {

class ApiKeys {
 public:
  ApiKeys() = default;
  // `env_list` is the value of DSV3_API_KEYS ("" when unset); `file` "" = none. Blank
  // entries and lines (and lines starting with '#') are skipped; a missing file is an error.
  static StatusOr<ApiKeys> Load(const std::vector<std::string>& flag_keys, std::string_view env_list,
                                const std::string& file);

  bool enabled() const { return !keys_.empty(); }
  size_t size() const { return keys_.size(); }
  // The whole Authorization header value; "Bearer" is matched case-insensitively.
  bool Authorize(std::string_view authorization) const;

 private:
  void Add(std::string_view key);
  std::vector<std::string> keys_;
};

// Constant-time equality for secrets (time depends only on the lengths).
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace dsv3::gateway
