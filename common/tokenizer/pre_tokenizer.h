// Pre-tokenization: the tokenizer.json `pre_tokenizer` chain (Sequence of Split regexes and
// a final ByteLevel) cutting text into the pieces BPE merges within.
//
// Data flow: text (valid UTF-8) -> Split #1 over the whole text -> Split #2 over each piece
// of #1 -> ... -> pieces (string_views into the caller's text). ByteLevel then only
// relabels bytes, which dsv3 skips because the BPE model works on raw bytes.
//
// Regexes are Oniguruma syntax (what Hugging Face tokenizers compiles); they are translated
// to PCRE2 (UTF + UCP, JIT compiled). The one semantic gap that matters, `\s`, is rewritten
// to the Unicode White_Space set that Oniguruma uses (PCRE2's \s lacks U+0085).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "nlohmann/json_fwd.hpp"

namespace dsv3 {

class RegexSplit;  // one compiled Split step (pre_tokenizer.cpp)

class PreTokenizer {
 public:
  // Builds the chain from the `pre_tokenizer` JSON object (null = whole text is one piece).
  // Unsupported types or options are an Unimplemented error, never silently ignored.
  static StatusOr<std::unique_ptr<PreTokenizer>> FromJson(const nlohmann::json& config);

  // Translates an Oniguruma pattern to an equivalent PCRE2 pattern (exposed for tests).
  static std::string TranslatePattern(std::string_view onig_pattern);

  ~PreTokenizer();

  // Appends the pieces of `text` (which must be valid UTF-8) to *pieces. Fails only when the
  // regex engine reports an error (e.g. a resource limit), never with partial output.
  Status Split(std::string_view text, std::vector<std::string_view>* pieces) const;

 private:
  PreTokenizer() = default;
  std::vector<std::unique_ptr<RegexSplit>> steps_;
};

}  // namespace dsv3
