#include "common/tokenizer/utf8.h"

namespace dsv3::utf8 {
namespace {

// Length of the sequence a lead byte announces and the allowed range of its second byte
// (Unicode Table 3-7); 0 for bytes that can never start a sequence.
struct LeadInfo {
  int length;
  uint8_t lo;
  uint8_t hi;
};

LeadInfo Lead(uint8_t b) {
  if (b < 0x80) return {1, 0, 0};
  if (b >= 0xC2 && b <= 0xDF) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};  // excludes surrogates
  if (b >= 0xE1 && b <= 0xEF) return {3, 0x80, 0xBF};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b >= 0xF1 && b <= 0xF3) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};  // nothing above U+10FFFF
  return {0, 0, 0};
}

constexpr char kReplacement[] = "\xEF\xBF\xBD";

// Length of the well-formed sequence at text[pos], or -(length of the maximal ill-formed
// subpart) when ill-formed, or 0 when the input ends inside a sequence that is still valid
// so far.
int Scan(std::string_view text, size_t pos) {
  const auto b0 = static_cast<uint8_t>(text[pos]);
  const LeadInfo info = Lead(b0);
  if (info.length == 1) return 1;
  if (info.length == 0) return -1;
  for (int i = 1; i < info.length; ++i) {
    if (pos + i >= text.size()) return 0;
    const auto b = static_cast<uint8_t>(text[pos + i]);
    const uint8_t lo = i == 1 ? info.lo : 0x80;
    const uint8_t hi = i == 1 ? info.hi : 0xBF;
    if (b < lo || b > hi) return -i;
  }
  return info.length;
}

}  // namespace

bool IsValid(std::string_view text, size_t* error_offset) {
  size_t pos = 0;
  while (pos < text.size()) {
    // Fast path for ASCII runs, the common case.
    if (static_cast<uint8_t>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    const int n = Scan(text, pos);
    if (n <= 0) {
      if (error_offset != nullptr) *error_offset = pos;
      return false;
    }
    pos += static_cast<size_t>(n);
  }
  return true;
}

size_t AppendLossy(std::string_view bytes, std::string* out, bool final) {
  size_t pos = 0;
  size_t run_start = 0;  // start of the pending run of well-formed bytes
  while (pos < bytes.size()) {
    if (static_cast<uint8_t>(bytes[pos]) < 0x80) {
      ++pos;
      continue;
    }
    const int n = Scan(bytes, pos);
    if (n > 0) {
      pos += static_cast<size_t>(n);
      continue;
    }
    out->append(bytes.substr(run_start, pos - run_start));
    if (n == 0) {
      // Truncated but possibly valid: keep it for later unless this is the end.
      if (!final) return pos;
      out->append(kReplacement);
      return bytes.size();
    }
    out->append(kReplacement);
    pos += static_cast<size_t>(-n);
    run_start = pos;
  }
  out->append(bytes.substr(run_start, pos - run_start));
  return bytes.size();
}

char32_t DecodeAt(std::string_view text, size_t* pos) {
  const auto b0 = static_cast<uint8_t>(text[*pos]);
  if (b0 < 0x80) {
    ++*pos;
    return b0;
  }
  int len = b0 >= 0xF0 ? 4 : b0 >= 0xE0 ? 3 : 2;
  char32_t cp = b0 & (0x7F >> len);
  for (int i = 1; i < len && *pos + i < text.size(); ++i) {
    cp = (cp << 6) | (static_cast<uint8_t>(text[*pos + i]) & 0x3F);
  }
  *pos += static_cast<size_t>(len);
  return cp;
}

void Append(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

size_t Length(std::string_view text) {
  size_t n = 0;
  for (char c : text) {
    if ((static_cast<uint8_t>(c) & 0xC0) != 0x80) ++n;
  }
  return n;
}

}  // namespace dsv3::utf8
