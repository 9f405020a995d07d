// Where the shared goldens live: $DSV3_SHARED_DIR, else the compile-time default
// (<repo>/../shared). Tests skip with a clear message when the directory is absent.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace dsv3::testing {

inline std::string SharedDir() {
  const char* env = std::getenv("DSV3_SHARED_DIR");
  if (env != nullptr && *env != '\0') return env;
  return DSV3_DEFAULT_SHARED_DIR;
}

inline std::string TokenizerDir() { return SharedDir() + "/tokenizer"; }

inline bool HaveTokenizerGoldens() {
  return std::filesystem::exists(TokenizerDir() + "/tokenizer.json");
}

inline std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace dsv3::testing

#define DSV3_SKIP_WITHOUT_GOLDENS()                                                               \
  do {                                                                                            \
    if (!::dsv3::testing::HaveTokenizerGoldens()) {                                               \
      GTEST_SKIP() << "../shared/tokenizer not found at " << ::dsv3::testing::TokenizerDir()     \
                   << " (set DSV3_SHARED_DIR to the directory holding tokenizer/)";               \
    }                                                                                             \
  } while (0)
