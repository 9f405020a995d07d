// Streaming decode: ids arrive one at a time (one per sampled token) and text goes out as
// soon as it is final. A UTF-8 character split across tokens (an emoji is often two or three
// byte-level tokens) is held back until complete, so no chunk ever carries broken UTF-8; an
// impossible byte sequence becomes U+FFFD at once. The concatenation of all chunks plus
// Finish() equals BpeTokenizer::Decode() of the whole id list.
//
// Not thread-safe: one instance per stream. The tokenizer must outlive it.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "common/tokenizer/bpe_tokenizer.h"

namespace dsv3 {

class IncrementalDetokenizer {
 public:
  IncrementalDetokenizer(const BpeTokenizer& tokenizer, DecodeOptions options = {})
      : tokenizer_(tokenizer), options_(options) {}

  // Feeds one id; returns the text that became final (possibly empty). Unknown ids are an
  // InvalidArgument error and leave the state unchanged.
  StatusOr<std::string> Push(int32_t id);

  // End of stream: a character left incomplete becomes U+FFFD. Resets the state.
  std::string Finish();

  // Bytes held back waiting for the rest of a character (0..3).
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const BpeTokenizer& tokenizer_;
  DecodeOptions options_;
  std::string pending_;
};

}  // namespace dsv3
