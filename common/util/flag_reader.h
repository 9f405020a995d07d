// FlagReader: the `--flag value` command lines of the dsv3 binaries. A missing value or a
// malformed integer ends the process with status 2 and a message naming the flag (bad
// command lines are the operator's to fix, not something to run with a guessed value).
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace dsv3 {

class FlagReader {
 public:
  FlagReader(int argc, char** argv) : argc_(argc), argv_(argv) {}
  // Advances to the next argument; false when there is none.
  bool Next() {
    if (++i_ >= argc_) return false;
    flag_ = argv_[i_];
    return true;
  }
  const std::string& flag() const { return flag_; }
  std::string Value() {
    if (i_ + 1 >= argc_) Fail("missing value for " + flag_);
    return argv_[++i_];
  }
  int64_t IntValue() {
    const std::string v = Value();
    char* end = nullptr;
    const long long n = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0') Fail(flag_ + " needs an integer, got '" + v + "'");
    return n;
  }
  [[noreturn]] static void Fail(const std::string& msg) {
    std::fprintf(stderr, "error: %s\n", msg.c_str());
    std::exit(2);
  }

 private:
  int argc_;
  char** argv_;
  int i_ = 0;
  std::string flag_;
};

}  // namespace dsv3
