// GPT-2 style byte-level alphabet: each of the 256 byte values is shown as one printable
// code point, so vocabulary and merge strings in tokenizer.json are text. dsv3 works on raw
// bytes internally and only uses this mapping to read tokenizer.json.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

namespace dsv3 {

class ByteLevelAlphabet {
 public:
  ByteLevelAlphabet();

  // The code point (as UTF-8) that stands for byte `b`.
  const std::string& Encode(unsigned char b) const { return byte_to_text_[b]; }

  // Maps a byte-level vocabulary string back to raw bytes; nullopt if it contains a code
  // point outside the alphabet (such tokens decode to their own UTF-8, as Hugging Face does).
  std::optional<std::string> Decode(std::string_view text) const;

 private:
  std::array<std::string, 256> byte_to_text_;
  std::array<int, 512> cp_to_byte_;  // all alphabet code points are < 512; -1 = not mapped
};

}  // namespace dsv3
