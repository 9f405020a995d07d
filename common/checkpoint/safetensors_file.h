// SafetensorsFile: one `.safetensors` shard. Opening reads and validates only the header
// (8-byte little-endian length + JSON); tensor bytes are mmap'ed on demand, and only the
// byte range covering the tensors a process asks for, so an expert worker never maps the
// attention weights of a shard it shares with them.
//
// Layout: [u64 n][n bytes JSON header][data region]. Header entries:
//   "name": {"dtype": "BF16", "shape": [r, c], "data_offsets": [begin, end]}
// with offsets relative to the data region. Every offset, size and overlap is checked
// against the real file size before anything is read.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/checkpoint/dtype.h"
#include "common/status.h"

namespace dsv3 {

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // offsets within the data region
  uint64_t end = 0;
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

// Upper bound on the JSON header: the real 163-shard checkpoint's largest is ~100 KiB.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;

// Validates a header against a data region of `data_size` bytes. `label` (file path)
// prefixes every error. Exposed for the fuzzer and the unit tests.
StatusOr<std::vector<TensorInfo>> ParseSafetensorsHeader(std::string_view header_json,
                                                         uint64_t data_size,
                                                         std::string_view label);

class SafetensorsFile {
 public:
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  static StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);

  const std::string& path() const { return path_; }
  uint64_t file_size() const { return file_size_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* Find(std::string_view name) const;

  // Maps the byte ranges of `wanted` (read-only, shared): one mapping per run of tensors
  // that are adjacent in the file (ranges sharing a page are merged), so bytes of tensors
  // nobody asked for are never mapped beyond the pages they share with wanted ones. May be
  // called again for more tensors. Returns the number of bytes newly mapped.
  // With `copy`, each range is read into anonymous memory backed by transparent huge
  // pages instead (see LoadOptions::copy_to_anonymous).
  StatusOr<uint64_t> Map(const std::vector<const TensorInfo*>& wanted, bool copy = false);
  int num_mappings() const { return static_cast<int>(maps_.size()); }
  // Pointer to a mapped tensor's bytes, or nullptr if it lies outside every mapping.
  const uint8_t* Data(const TensorInfo& t) const;
  // Touches the mapped pages of `t` so load time is paid up front, not in the first forward.
  void Prefault(const TensorInfo& t) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  int fd_ = -1;
  uint64_t file_size_ = 0;
  uint64_t data_start_ = 0;  // 8 + header length
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string_view, size_t> index_;
  struct Mapping {
    uint64_t file_offset;  // page aligned
    uint64_t len;
    void* base;
  };
  std::vector<Mapping> maps_;  // sorted by file_offset, non-overlapping
};

}  // namespace dsv3
