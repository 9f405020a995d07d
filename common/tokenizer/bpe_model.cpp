#include "common/tokenizer/bpe_model.h"

#include <queue>

#include "absl/hash/hash.h"
#include "nlohmann/json.hpp"

namespace dsv3 {
namespace {

constexpr std::string_view kSubsystem = "tokenizer";

// Pieces up to this many bytes merge with the quadratic scan, which beats a heap there.
constexpr size_t kSmallPiece = 48;

uint64_t PairKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

}  // namespace

StatusOr<std::unique_ptr<BpeModel>> BpeModel::FromJson(const nlohmann::json& model,
                                                      const ByteLevelAlphabet& alphabet) {
  if (model.value("type", "BPE") != "BPE") {
    return Unimplemented(kSubsystem, absl::StrCat("model type '", model.value("type", ""), "'"));
  }
  if (!model.value("continuing_subword_prefix", nlohmann::json()).is_null() ||
      !model.value("end_of_word_suffix", nlohmann::json()).is_null()) {
    return Unimplemented(kSubsystem, "BPE continuing_subword_prefix / end_of_word_suffix");
  }
  if (!model.value("dropout", nlohmann::json()).is_null() || model.value("ignore_merges", false) ||
      model.value("byte_fallback", false)) {
    return Unimplemented(kSubsystem, "BPE dropout / ignore_merges / byte_fallback");
  }
  const auto& vocab = model.at("vocab");
  if (!vocab.is_object()) return InvalidArgument(kSubsystem, "model.vocab is not an object");
  auto bpe = std::unique_ptr<BpeModel>(new BpeModel());
  int64_t max_id = -1;
  for (const auto& [token, id_json] : vocab.items()) {
    const int64_t id = id_json.get<int64_t>();
    if (id < 0 || id > (int64_t{1} << 30)) return InvalidArgument(kSubsystem, "vocabulary id out of range");
    max_id = std::max(max_id, id);
  }
  bpe->id_bytes_.resize(static_cast<size_t>(max_id + 1));
  bpe->known_.assign(static_cast<size_t>(max_id + 1), false);
  bpe->bytes_to_id_.reserve(vocab.size());
  for (const auto& [token, id_json] : vocab.items()) {
    const auto id = id_json.get<int32_t>();
    // Tokens outside the byte alphabet decode as their own UTF-8 (Hugging Face behaviour).
    std::string bytes = alphabet.Decode(token).value_or(token);
    bpe->bytes_to_id_.emplace(bytes, id);
    bpe->id_bytes_[id] = std::move(bytes);
    bpe->known_[id] = true;
  }
  for (int b = 0; b < 256; ++b) {
    const int32_t id = bpe->Find(std::string_view(reinterpret_cast<const char*>(&b), 1));
    if (id < 0) {
      return Unimplemented(kSubsystem, absl::StrCat("byte-level vocabulary lacks a token for byte ", b));
    }
    bpe->byte_id_[b] = id;
  }
  const auto& merges = model.at("merges");
  bpe->merges_.reserve(merges.size());
  uint32_t rank = 0;
  for (const auto& merge : merges) {
    std::string left, right;
    if (merge.is_string()) {
      const std::string s = merge.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        return InvalidArgument(kSubsystem, absl::StrCat("malformed merge '", s, "'"));
      }
      left = s.substr(0, space);
      right = s.substr(space + 1);
    } else if (merge.is_array() && merge.size() == 2) {
      left = merge[0].get<std::string>();
      right = merge[1].get<std::string>();
    } else {
      return InvalidArgument(kSubsystem, "merge entry is neither \"a b\" nor [a, b]");
    }
    const std::string lb = alphabet.Decode(left).value_or(left);
    const std::string rb = alphabet.Decode(right).value_or(right);
    const int32_t lid = bpe->Find(lb);
    const int32_t rid = bpe->Find(rb);
    const int32_t mid = bpe->Find(lb + rb);
    if (lid < 0 || rid < 0 || mid < 0) {
      return InvalidArgument(kSubsystem,
                             absl::StrCat("merge '", left, " ", right, "' uses tokens missing from the vocabulary"));
    }
    // The first (lowest-rank) occurrence of a pair wins, as in Hugging Face.
    bpe->merges_.try_emplace(PairKey(lid, rid), (static_cast<uint64_t>(rank) << 32) | static_cast<uint32_t>(mid));
    ++rank;
  }
  return bpe;
}

int32_t BpeModel::Find(std::string_view bytes) const {
  // Debian's Abseil has its own string_view type; convert for heterogeneous lookup.
  auto it = bytes_to_id_.find(absl::string_view(bytes.data(), bytes.size()));
  return it == bytes_to_id_.end() ? -1 : it->second;
}

bool BpeModel::LookupMerge(int32_t left, int32_t right, uint32_t* rank, int32_t* merged) const {
  auto it = merges_.find(PairKey(left, right));
  if (it == merges_.end()) return false;
  *rank = static_cast<uint32_t>(it->second >> 32);
  *merged = static_cast<int32_t>(it->second & 0xFFFFFFFFu);
  return true;
}

void BpeModel::MergeSmall(std::vector<int32_t>* symbols) const {
  std::vector<int32_t>& s = *symbols;
  while (s.size() > 1) {
    uint32_t best_rank = UINT32_MAX;
    size_t best = 0;
    int32_t best_merged = -1;
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      uint32_t rank;
      int32_t merged;
      if (LookupMerge(s[i], s[i + 1], &rank, &merged) && rank < best_rank) {
        best_rank = rank;
        best = i;
        best_merged = merged;
      }
    }
    if (best_merged < 0) break;
    s[best] = best_merged;
    s.erase(s.begin() + static_cast<std::ptrdiff_t>(best) + 1);
  }
}

void BpeModel::MergeLarge(std::vector<int32_t>* symbols) const {
  // Linked list over the initial byte symbols plus a min-heap of candidate merges keyed by
  // (rank, position); stale candidates are detected on pop. O(n log n) for huge pieces.
  std::vector<int32_t>& s = *symbols;
  const int32_t n = static_cast<int32_t>(s.size());
  std::vector<int32_t> prev(n), next(n);
  for (int32_t i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Candidate {
    uint32_t rank;
    int32_t pos;
    int32_t left;
    int32_t right;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  auto push = [&](int32_t pos) {
    if (pos < 0 || next[pos] < 0) return;
    uint32_t rank;
    int32_t merged;
    if (LookupMerge(s[pos], s[next[pos]], &rank, &merged)) heap.push({rank, pos, s[pos], s[next[pos]]});
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);
  std::vector<bool> alive(n, true);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    if (!alive[c.pos] || s[c.pos] != c.left) continue;
    const int32_t r = next[c.pos];
    if (r < 0 || s[r] != c.right) continue;
    uint32_t rank;
    int32_t merged;
    LookupMerge(c.left, c.right, &rank, &merged);
    s[c.pos] = merged;
    alive[r] = false;
    next[c.pos] = next[r];
    if (next[r] >= 0) prev[next[r]] = c.pos;
    push(prev[c.pos]);
    push(c.pos);
  }
  std::vector<int32_t> out;
  for (int32_t i = 0; i >= 0 && i < n; i = next[i]) out.push_back(s[i]);
  s.swap(out);
}

void BpeModel::Encode(std::string_view piece, std::vector<int32_t>* out) const {
  if (piece.empty()) return;
  const bool cacheable = piece.size() <= kMaxCachedPieceBytes;
  CacheShard* shard = nullptr;
  const absl::string_view key(piece.data(), piece.size());
  if (cacheable) {
    shard = &cache_[absl::Hash<absl::string_view>{}(key) % kShards];
    std::lock_guard<std::mutex> lock(shard->mu);
    auto it = shard->map.find(key);
    if (it != shard->map.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> symbols(piece.size());
  for (size_t i = 0; i < piece.size(); ++i) symbols[i] = byte_id_[static_cast<unsigned char>(piece[i])];
  if (symbols.size() <= kSmallPiece) {
    MergeSmall(&symbols);
  } else {
    MergeLarge(&symbols);
  }
  out->insert(out->end(), symbols.begin(), symbols.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(shard->mu);
    if (shard->map.size() >= kMaxEntriesPerShard) shard->map.clear();
    shard->map.emplace(std::string(piece), std::move(symbols));
  }
}

}  // namespace dsv3
