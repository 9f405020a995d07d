#include "common/sampling/json_automaton.h"

#include <cstring>

namespace dsv3 {
namespace {

bool IsSpace(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool IsDigit(uint8_t c) { return c >= '0' && c <= '9'; }
int HexValue(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
constexpr const char* kLiterals[] = {"true", "false", "null"};

}  // namespace

bool JsonAutomaton::Feed(std::string_view bytes) {
  for (char ch : bytes) {
    if (!Byte(static_cast<uint8_t>(ch))) return false;
  }
  return true;
}

bool JsonAutomaton::Open(bool object) {
  if (depth_ >= kMaxDepth) return false;
  const uint64_t bit = uint64_t{1} << depth_;
  stack_ = object ? (stack_ | bit) : (stack_ & ~bit);
  ++depth_;
  mode_ = object ? Mode::kKeyOrClose : Mode::kValueOrEnd;
  return true;
}

bool JsonAutomaton::Close(bool object) {
  if (depth_ == 0 || in_object() != object) return false;
  --depth_;
  return EndValue();
}

bool JsonAutomaton::EndValue() {
  mode_ = depth_ == 0 ? Mode::kDone : Mode::kAfterValue;
  return true;
}

bool JsonAutomaton::Structural(uint8_t c) {
  if (IsSpace(c)) return Space();
  switch (c) {
    case ',': mode_ = in_object() ? Mode::kKey : Mode::kValue; return true;
    case '}': return Close(true);
    case ']': return Close(false);
    default: return false;
  }
}

bool JsonAutomaton::NumberEnd(uint8_t c) {
  EndValue();  // numbers only occur inside a container: the mode is now kAfterValue
  return Byte(c);
}

bool JsonAutomaton::Byte(uint8_t c) {
  if (!IsSpace(c)) ws_run_ = 0;
  switch (mode_) {
    case Mode::kStart:
      return c == '{' && Open(true);
    case Mode::kValueOrEnd:
      if (c == ']') return Close(false);
      [[fallthrough]];
    case Mode::kValue:
      if (IsSpace(c)) return Space();
      switch (c) {
        case '{': return Open(true);
        case '[': return Open(false);
        case '"': key_ = false; mode_ = Mode::kString; return true;
        case '-': mode_ = Mode::kNumMinus; return true;
        case '0': mode_ = Mode::kNumZero; return true;
        case 't': aux_ = 0; pos_ = 1; mode_ = Mode::kLiteral; return true;
        case 'f': aux_ = 1; pos_ = 1; mode_ = Mode::kLiteral; return true;
        case 'n': aux_ = 2; pos_ = 1; mode_ = Mode::kLiteral; return true;
        default:
          if (c >= '1' && c <= '9') {
            mode_ = Mode::kNumInt;
            return true;
          }
          return false;
      }
    case Mode::kKeyOrClose:
      if (c == '}') return Close(true);
      [[fallthrough]];
    case Mode::kKey:
      if (IsSpace(c)) return Space();
      if (c != '"') return false;
      key_ = true;
      mode_ = Mode::kString;
      return true;
    case Mode::kColon:
      if (IsSpace(c)) return Space();
      if (c != ':') return false;
      mode_ = Mode::kValue;
      return true;
    case Mode::kAfterValue:
      return Structural(c);
    case Mode::kString:
      if (utf8_left_ > 0) {
        if (c < utf8_lo_ || c > utf8_hi_) return false;
        --utf8_left_;
        utf8_lo_ = 0x80;
        utf8_hi_ = 0xBF;
        return true;
      }
      if (c == '"') {
        if (key_) {
          key_ = false;
          mode_ = Mode::kColon;
          return true;
        }
        return EndValue();
      }
      if (c == '\\') {
        mode_ = Mode::kEscape;
        return true;
      }
      if (c < 0x20) return false;
      if (c < 0x80) return true;
      // UTF-8 lead bytes, with the narrowed range of the first continuation byte that
      // excludes overlongs (E0, F0), surrogates (ED) and code points above U+10FFFF (F4).
      if (c >= 0xC2 && c <= 0xDF) {
        utf8_left_ = 1;
      } else if (c >= 0xE0 && c <= 0xEF) {
        utf8_left_ = 2;
        if (c == 0xE0) utf8_lo_ = 0xA0;
        if (c == 0xED) utf8_hi_ = 0x9F;
      } else if (c >= 0xF0 && c <= 0xF4) {
        utf8_left_ = 3;
        if (c == 0xF0) utf8_lo_ = 0x90;
        if (c == 0xF4) utf8_hi_ = 0x8F;
      } else {
        return false;
      }
      return true;
    case Mode::kEscape:
      if (c == 'u') {
        mode_ = Mode::kUnicode;
        aux_ = 4;
        hex_ = 0;
        return true;
      }
      if (std::strchr("\"\\/bfnrt", c) == nullptr || c == 0) return false;
      mode_ = Mode::kString;
      return true;
    case Mode::kUnicode: {
      const int v = HexValue(c);
      if (v < 0) return false;
      hex_ = static_cast<uint16_t>(hex_ * 16 + v);
      if (--aux_ > 0) return true;
      const bool high = hex_ >= 0xD800 && hex_ <= 0xDBFF, low = hex_ >= 0xDC00 && hex_ <= 0xDFFF;
      if (low_) {
        low_ = false;
        if (!low) return false;
        mode_ = Mode::kString;
        return true;
      }
      if (low) return false;  // a low surrogate without its high one
      mode_ = high ? Mode::kLowBackslash : Mode::kString;
      return true;
    }
    case Mode::kLowBackslash:
      if (c != '\\') return false;
      mode_ = Mode::kLowU;
      return true;
    case Mode::kLowU:
      if (c != 'u') return false;
      mode_ = Mode::kUnicode;
      aux_ = 4;
      hex_ = 0;
      low_ = true;
      return true;
    case Mode::kNumMinus:
      if (c == '0') mode_ = Mode::kNumZero;
      else if (c >= '1' && c <= '9') mode_ = Mode::kNumInt;
      else return false;
      return true;
    case Mode::kNumZero:
    case Mode::kNumInt:
      if (mode_ == Mode::kNumInt && IsDigit(c)) return true;
      if (c == '.') {
        mode_ = Mode::kNumDot;
        return true;
      }
      if (c == 'e' || c == 'E') {
        mode_ = Mode::kNumExp;
        return true;
      }
      return NumberEnd(c);
    case Mode::kNumDot:
      if (!IsDigit(c)) return false;
      mode_ = Mode::kNumFrac;
      return true;
    case Mode::kNumFrac:
      if (IsDigit(c)) return true;
      if (c == 'e' || c == 'E') {
        mode_ = Mode::kNumExp;
        return true;
      }
      return NumberEnd(c);
    case Mode::kNumExp:
      if (c == '+' || c == '-') {
        mode_ = Mode::kNumExpSign;
        return true;
      }
      [[fallthrough]];
    case Mode::kNumExpSign:
      if (!IsDigit(c)) return false;
      mode_ = Mode::kNumExpDigits;
      return true;
    case Mode::kNumExpDigits:
      if (IsDigit(c)) return true;
      return NumberEnd(c);
    case Mode::kLiteral: {
      const char* lit = kLiterals[aux_];
      if (c != static_cast<uint8_t>(lit[pos_])) return false;
      if (lit[++pos_] == '\0') return EndValue();
      return true;
    }
    case Mode::kDone:
      return false;
  }
  return false;
}

std::string JsonAutomaton::Serialize() const {
  std::string out(20, '\0');
  out[0] = static_cast<char>(mode_);
  out[1] = static_cast<char>(depth_);
  out[2] = static_cast<char>(aux_);
  out[3] = static_cast<char>(pos_);
  out[4] = static_cast<char>(utf8_left_);
  out[5] = static_cast<char>(utf8_lo_);
  out[6] = static_cast<char>(utf8_hi_);
  out[7] = static_cast<char>((key_ ? 1 : 0) | (low_ ? 2 : 0));
  out[8] = static_cast<char>(hex_ & 0xFF);
  out[9] = static_cast<char>(hex_ >> 8);
  for (int i = 0; i < 8; ++i) out[10 + i] = static_cast<char>((stack_ >> (8 * i)) & 0xFF);
  out[18] = static_cast<char>(ws_run_);
  out[19] = 'J';
  return out;
}

bool JsonAutomaton::Restore(std::string_view b) {
  if (b.size() != 20 || b[19] != 'J') return false;
  auto u = [&](int i) { return static_cast<uint8_t>(b[static_cast<size_t>(i)]); };
  if (u(0) > static_cast<uint8_t>(Mode::kDone) || u(1) > kMaxDepth || u(2) > 4 || u(4) > 3) return false;
  if (u(0) == static_cast<uint8_t>(Mode::kLiteral) && (u(2) > 2 || u(3) == 0 || u(3) >= std::strlen(kLiterals[u(2)]))) {
    return false;
  }
  mode_ = static_cast<Mode>(u(0));
  depth_ = u(1);
  aux_ = u(2);
  pos_ = u(3);
  utf8_left_ = u(4);
  utf8_lo_ = u(5);
  utf8_hi_ = u(6);
  key_ = (u(7) & 1) != 0;
  low_ = (u(7) & 2) != 0;
  hex_ = static_cast<uint16_t>(u(8) | (u(9) << 8));
  stack_ = 0;
  for (int i = 0; i < 8; ++i) stack_ |= static_cast<uint64_t>(u(10 + i)) << (8 * i);
  ws_run_ = u(18);
  return true;
}

}  // namespace dsv3
