// Added tokens (special or not) are cut out of the input text before pre-tokenization:
// the leftmost occurrence wins, and the longest token at that position (the semantics of
// both Hugging Face tokenizers and transformers.js' DictionarySplitter).
#pragma once

#include <bitset>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3 {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;
  bool lstrip = false;  // swallow whitespace on the left of a match
  bool rstrip = false;  // swallow whitespace on the right of a match
};

class AddedTokenMatcher {
 public:
  struct Match {
    size_t begin;   // byte offset of the token in the text
    size_t end;     // one past its last byte
    size_t index;   // index into the tokens passed to Add()
  };

  // Registers token content `content` (non-empty) under `index`.
  void Add(std::string_view content, size_t index);

  // Leftmost-longest match starting at or after `from`; nullopt when none.
  std::optional<Match> FindNext(std::string_view text, size_t from) const;

  bool empty() const { return nodes_.size() <= 1; }

 private:
  struct Node {
    // Children sorted by byte; added tokens are few, so a linear scan is fast.
    std::vector<std::pair<unsigned char, int32_t>> children;
    int64_t index = -1;
  };
  int32_t Child(int32_t node, unsigned char b) const;

  std::vector<Node> nodes_{Node{}};
  std::bitset<256> first_bytes_;
};

}  // namespace dsv3
