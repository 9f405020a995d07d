// Byte-level BPE model: merges byte sequences (pre-tokenizer pieces) into vocabulary ids by
// merge rank, exactly like Hugging Face's BPE (lowest rank first, leftmost on ties).
//
// Thread safety: immutable after load except for the piece cache, which is sharded and
// mutex-guarded, so one BpeModel serves any number of threads.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "common/status.h"
#include "common/tokenizer/byte_level.h"
#include "nlohmann/json_fwd.hpp"

namespace dsv3 {

class BpeModel {
 public:
  // `model` is tokenizer.json's "model" object (type BPE, byte-level vocabulary).
  static StatusOr<std::unique_ptr<BpeModel>> FromJson(const nlohmann::json& model,
                                                      const ByteLevelAlphabet& alphabet);

  // Appends the ids of one pre-tokenized piece (raw bytes, non-empty) to *out.
  void Encode(std::string_view piece, std::vector<int32_t>* out) const;

  // Vocabulary (without added tokens): raw bytes per id; ids not in the vocabulary have an
  // empty entry and id_known(id) false.
  size_t id_space() const { return id_bytes_.size(); }
  bool id_known(int32_t id) const { return id >= 0 && static_cast<size_t>(id) < known_.size() && known_[id]; }
  const std::string& id_bytes(int32_t id) const { return id_bytes_[id]; }
  // Vocabulary lookup by raw bytes; -1 when absent.
  int32_t Find(std::string_view bytes) const;

 private:
  BpeModel() = default;
  void MergeSmall(std::vector<int32_t>* symbols) const;
  void MergeLarge(std::vector<int32_t>* symbols) const;
  // Rank and result of merging (left, right); false when no such merge exists.
  bool LookupMerge(int32_t left, int32_t right, uint32_t* rank, int32_t* merged) const;

  absl::flat_hash_map<std::string, int32_t> bytes_to_id_;
  std::vector<std::string> id_bytes_;
  std::vector<bool> known_;
  std::array<int32_t, 256> byte_id_{};
  // (left << 32 | right) -> (rank << 32 | merged id)
  absl::flat_hash_map<uint64_t, uint64_t> merges_;

  // Cache of recent piece -> ids results. Bounded: a shard that fills up is cleared, which
  // keeps memory fixed without LRU bookkeeping on the hot path.
  static constexpr size_t kShards = 16;
  static constexpr size_t kMaxEntriesPerShard = 8192;
  static constexpr size_t kMaxCachedPieceBytes = 256;
  struct CacheShard {
    std::mutex mu;
    absl::flat_hash_map<std::string, std::vector<int32_t>> map;
  };
  mutable std::array<CacheShard, kShards> cache_;
};

}  // namespace dsv3
