#include "common/tokenizer/byte_level.h"

#include "common/tokenizer/utf8.h"

namespace dsv3 {

ByteLevelAlphabet::ByteLevelAlphabet() {
  cp_to_byte_.fill(-1);
  // Printable Latin-1 bytes stand for themselves; the rest are shifted to 256+n in byte
  // order (bytes_to_unicode() of GPT-2, which Hugging Face's ByteLevel reuses).
  int next = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    const int cp = printable ? b : 256 + next++;
    std::string text;
    utf8::Append(static_cast<char32_t>(cp), &text);
    byte_to_text_[b] = text;
    cp_to_byte_[cp] = b;
  }
}

std::optional<std::string> ByteLevelAlphabet::Decode(std::string_view text) const {
  if (!utf8::IsValid(text)) return std::nullopt;
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    const char32_t cp = utf8::DecodeAt(text, &pos);
    if (cp >= cp_to_byte_.size() || cp_to_byte_[cp] < 0) return std::nullopt;
    out.push_back(static_cast<char>(cp_to_byte_[cp]));
  }
  return out;
}

}  // namespace dsv3
