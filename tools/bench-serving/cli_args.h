// A small "--name value" / "--switch" command-line reader shared by dsv3-bench and
// dsv3-bench-grpc: unknown names, missing values and malformed numbers are errors.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>

namespace dsv3::bench {

class CliArgs {
 public:
  // `flags` take a value (also as --name=value); `switches` do not.
  static std::optional<CliArgs> Parse(int argc, char** argv, const std::set<std::string>& flags,
                                      const std::set<std::string>& switches, std::string* error);

  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  std::string Get(const std::string& name, const std::string& fallback = "") const;
  // The value as a number within [min, max]; fallback when absent; nullopt + *error when bad.
  std::optional<int64_t> Int(const std::string& name, int64_t fallback, int64_t min, int64_t max,
                             std::string* error) const;
  std::optional<double> Double(const std::string& name, double fallback, double min, double max,
                               std::string* error) const;

 private:
  std::map<std::string, std::string> values_;  // switches map to ""
};

}  // namespace dsv3::bench
