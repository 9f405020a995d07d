// SafetensorsWriter: writes `.safetensors` files and sharded Hugging Face checkpoint
// directories (model-0000K-of-0000N.safetensors + model.safetensors.index.json), laid out
// as the official writer does: tensors sorted by dtype size (largest first) then name, data
// in that order, JSON header compact with "__metadata__" first and padded with spaces to a
// multiple of 8 bytes.
//
// Tensors are described up front and their bytes are produced by a callback when the
// writer reaches them, so a multi-GB random checkpoint is streamed tensor by tensor instead
// of being held in memory (dsv3-mkmodel), while tests can still hand in literal bytes.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/checkpoint/dtype.h"
#include "common/status.h"

namespace dsv3 {

// Fills exactly `n` bytes at `dst` with the tensor's data.
using TensorFillFn = std::function<Status(uint8_t* dst, uint64_t n)>;

struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  TensorFillFn fill;

  uint64_t numel() const;
  uint64_t nbytes() const { return numel() * DTypeSize(dtype); }
};

// Convenience: a tensor whose bytes are given (copied into the callback). The byte count
// must match dtype x shape; Add() checks it.
TensorToWrite TensorFromBytes(std::string name, DType dtype, std::vector<int64_t> shape,
                              std::vector<uint8_t> bytes);

class SafetensorsWriter {
 public:
  // Rejects empty or duplicate names, "__metadata__" and negative dimensions. Byte counts
  // are checked when the data is produced (TensorFromBytes fails on a mismatch).
  Status Add(TensorToWrite t);
  Status Add(std::string name, DType dtype, std::vector<int64_t> shape, std::vector<uint8_t> bytes) {
    return Add(TensorFromBytes(std::move(name), dtype, std::move(shape), std::move(bytes)));
  }
  void SetMetadata(std::string key, std::string value) { metadata_[std::move(key)] = std::move(value); }

  size_t size() const { return tensors_.size(); }
  const std::vector<TensorToWrite>& tensors() const { return tensors_; }
  uint64_t data_bytes() const;

  // The padded JSON header (without the 8-byte length), for the layout the writer uses.
  std::string Header() const;
  // Whole file in memory (tests, fuzz seeds).
  StatusOr<std::string> Serialize() const;
  // Writes `path` (via a temporary file + rename, so a crash never leaves a half file
  // under the final name).
  Status WriteFile(const std::string& path) const;

 private:
  std::vector<const TensorToWrite*> Ordered() const;
  std::vector<TensorToWrite> tensors_;
  std::set<std::string> names_;
  std::map<std::string, std::string> metadata_{{"format", "pt"}};
};

struct ShardedWriteResult {
  std::vector<std::string> shard_files;  // file names, in shard order
  uint64_t total_size = 0;               // sum of tensor bytes (the index's total_size)
  uint64_t file_bytes = 0;               // sum of file sizes written
  uint64_t num_params = 0;               // sum of element counts
};

// Assigns a tensor (by its position in `tensors`) to a shard in [0, num_shards).
using ShardAssignFn = std::function<int(const TensorToWrite& t, size_t position)>;

// Writes `tensors` into `num_shards` shards under `dir` (created if needed) plus the index.
// Without `assign`, tensors are split in their given order into contiguous runs of
// roughly equal bytes, as Hugging Face's max_shard_size splitting does. Every shard must
// receive at least one tensor.
StatusOr<ShardedWriteResult> WriteShardedCheckpoint(const std::string& dir,
                                                    std::vector<TensorToWrite> tensors,
                                                    int num_shards,
                                                    const ShardAssignFn& assign = nullptr);

// "model-00001-of-00004.safetensors" for (0, 4).
std::string ShardFileName(int index, int num_shards);

}  // namespace dsv3
