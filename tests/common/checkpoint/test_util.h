// Helpers shared by the checkpoint tests: a unique temporary directory per test and raw
// file writers for hand-made (corrupt) safetensors files.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

namespace dsv3::testing_util {

// A fresh directory under ::testing::TempDir(), named after the running test and the pid so
// parallel ctest runs never share files; removed when the test ends.
class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::path(::testing::TempDir()) /
           (std::string("dsv3_") + info->test_suite_name() + "_" + info->name() + "_" +
            std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    if (!HasFailure()) std::filesystem::remove_all(dir_);  // keep evidence of failures
  }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }
  std::filesystem::path dir_;
};

inline void WriteFileBytes(const std::string& path, const std::string& bytes) {
  std::ofstream o(path, std::ios::binary | std::ios::trunc);
  o.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(o.good()) << path;
}

inline std::string ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// [u64 little-endian header length][header][data_size bytes of a repeating pattern].
inline std::string RawSafetensors(const std::string& header, uint64_t data_size,
                                  uint64_t declared_len = UINT64_MAX) {
  const uint64_t n = declared_len == UINT64_MAX ? header.size() : declared_len;
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xFF));
  out += header;
  for (uint64_t i = 0; i < data_size; ++i) out.push_back(static_cast<char>(i * 7 + 1));
  return out;
}

}  // namespace dsv3::testing_util
