// Models for tests: the oracle fixtures in ../shared (when present) and random-weight
// checkpoints written once per test process into a private scratch directory (ctest runs
// tests as parallel processes), removed when the process exits.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "tools/mkmodel/random_checkpoint.h"

namespace dsv3::testing {

// "" when ../shared/oracle/<name> is absent (DSV3_SHARED_DIR overrides ../shared).
inline std::string SharedOracle(const char* name) {
  const char* env = std::getenv("DSV3_SHARED_DIR");
  std::string d = std::string(env && *env ? env : DSV3_SHARED_DIR) + "/oracle/" + name;
  return std::filesystem::is_directory(d) ? d : "";
}

// "" when ../shared/tokenizer (the real DeepSeek-V3 tokenizer.json) is absent.
inline std::string SharedTokenizer() {
  const char* env = std::getenv("DSV3_SHARED_DIR");
  std::string d = std::string(env && *env ? env : DSV3_SHARED_DIR) + "/tokenizer";
  return std::filesystem::exists(d + "/tokenizer.json") ? d : "";
}

struct ScratchDir {
  explicit ScratchDir(const std::string& name)
      : path(::testing::TempDir() + "/dsv3_" + name + "_" + std::to_string(::getpid())) {
    std::filesystem::remove_all(path);
  }
  ~ScratchDir() { std::filesystem::remove_all(path); }
  ScratchDir(const ScratchDir&) = delete;
  std::string path;
};

// A dsv3-mkmodel checkpoint with the tiny preset's shape; written on first use.
inline std::string RandomTinyModel(const std::string& name, uint64_t seed, bool fp8) {
  static std::map<std::string, std::unique_ptr<ScratchDir>> dirs;  // lives until exit
  auto& d = dirs[name];
  if (!d) {
    d = std::make_unique<ScratchDir>(name);
    auto cfg = PresetConfig("tiny", fp8);
    auto r = WriteRandomCheckpoint(d->path, cfg->ToJson(), seed, 2);
    EXPECT_TRUE(r.ok()) << r.status();
  }
  return d->path;
}

}  // namespace dsv3::testing
