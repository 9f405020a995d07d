// Checkpoint: a Hugging Face model directory as it ships (config.json, sharded
// safetensors + model.safetensors.index.json, or a single model.safetensors).
//
// Open() reads config.json, the index and every shard *header*; no tensor bytes are
// touched. Load(names) maps only the shards (and byte ranges) holding those tensors and
// pre-faults them, reporting progress. Get() hands out views into the mapping: FP8
// weights stay FP8 in memory and kernels dequantize them on the fly.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/checkpoint/safetensors_file.h"
#include "common/config/model_config.h"
#include "common/status.h"

namespace dsv3 {

struct TensorView {
  const TensorInfo* info = nullptr;
  const void* data = nullptr;
  const std::string& name() const { return info->name; }
  DType dtype() const { return info->dtype; }
  const std::vector<int64_t>& shape() const { return info->shape; }
  int64_t numel() const { return info->numel(); }
};

struct LoadProgress {
  int shards_done = 0;
  int shards_total = 0;
  uint64_t bytes_done = 0;
  uint64_t bytes_total = 0;
  double seconds = 0;
  bool finished = false;
};
using LoadProgressFn = std::function<void(const LoadProgress&)>;

// Prints progress to stderr: a refreshing line on a terminal, one line every few seconds
// (and at the end) otherwise, so logs show shards, bytes and rate.
LoadProgressFn StderrLoadProgress();

class Checkpoint {
 public:
  static StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const ModelConfig& config() const { return config_; }
  bool Has(const std::string& name) const { return where_.count(name) != 0; }
  // Names of all tensors in the index, in no particular order.
  std::vector<std::string> TensorNames() const;

  // Maps and pre-faults exactly these tensors. A missing name is an error naming it.
  // copy_to_anonymous: read them into anonymous huge-page memory instead of mapping the
  // page cache. Decode streams every weight per token, and 4 KiB file pages cost a TLB
  // miss per page; huge pages do not. Needs the RAM for the weights (the page cache may
  // be dropped afterwards); mmap stays the default for checkpoints larger than memory.
  Status Load(const std::vector<std::string>& names, const LoadProgressFn& progress = nullptr,
              bool copy_to_anonymous = false);
  // A loaded tensor, checked against the expected dtype set and shape (empty: any).
  StatusOr<TensorView> Get(const std::string& name, std::initializer_list<DType> dtypes = {},
                           const std::vector<int64_t>& shape = {}) const;
  uint64_t bytes_mapped() const { return bytes_mapped_; }
  int shards_mapped() const { return shards_mapped_; }

 private:
  Checkpoint() = default;
  struct Location {
    SafetensorsFile* file;
    const TensorInfo* info;
  };
  std::string dir_;
  ModelConfig config_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::unordered_map<std::string, Location> where_;
  std::unordered_map<std::string, bool> loaded_;
  uint64_t bytes_mapped_ = 0;
  int shards_mapped_ = 0;
};

}  // namespace dsv3
