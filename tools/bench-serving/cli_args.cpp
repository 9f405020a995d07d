#include "tools/bench-serving/cli_args.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace dsv3::bench {

std::optional<CliArgs> CliArgs::Parse(int argc, char** argv, const std::set<std::string>& flags,
                                      const std::set<std::string>& switches, std::string* error) {
  CliArgs a;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0) {
      *error = "unexpected argument '" + arg + "'";
      return std::nullopt;
    }
    std::string name = arg.substr(2), value;
    bool inline_value = false;
    if (const size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      inline_value = true;
    }
    if (switches.count(name)) {
      if (inline_value) {
        *error = "--" + name + " takes no value";
        return std::nullopt;
      }
      a.values_[name] = "";
    } else if (flags.count(name)) {
      if (!inline_value) {
        if (i + 1 >= argc) {
          *error = "missing value for --" + name;
          return std::nullopt;
        }
        value = argv[++i];
      }
      a.values_[name] = value;
    } else {
      *error = "unknown option --" + name;
      return std::nullopt;
    }
  }
  return a;
}

std::string CliArgs::Get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

std::optional<int64_t> CliArgs::Int(const std::string& name, int64_t fallback, int64_t min, int64_t max,
                                    std::string* error) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  const std::string& s = it->second;
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || errno != 0 || v < min || v > max) {
    *error = "--" + name + " must be an integer in [" + std::to_string(min) + ", " + std::to_string(max) +
             "], got '" + s + "'";
    return std::nullopt;
  }
  return v;
}

std::optional<double> CliArgs::Double(const std::string& name, double fallback, double min, double max,
                                      std::string* error) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  const std::string& s = it->second;
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || errno != 0 || !std::isfinite(v) || v < min || v > max) {
    *error = "--" + name + " must be a number in [" + std::to_string(min) + ", " + std::to_string(max) + "], got '" +
             s + "'";
    return std::nullopt;
  }
  return v;
}

}  // namespace dsv3::bench
