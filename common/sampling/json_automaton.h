// JsonAutomaton: a byte-at-a-time recognizer of one JSON object (RFC 8259 with UTF-8
// text), for constrained decoding (response_format json_object). Feed() takes the bytes of
// a candidate token and says whether the text so far is still the prefix of some valid
// document; done() says the top-level object has closed. The whole state is a small value
// (copied per candidate token while masking the vocabulary) and serializes to bytes so a
// sequence moved from a prefill to a decode worker keeps its place.
//
// Accepted: a top-level object (OpenAI's json_object mode) starting at the first byte,
// runs of at most 32 whitespace bytes between tokens (room for pretty-printing, none for a
// model that would pad forever), nesting up to 64 levels, strings with every escape (\uXXXX included) and
// well-formed UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF), numbers in JSON's
// grammar, true / false / null. After the closing brace nothing more is accepted.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace dsv3 {

class JsonAutomaton {
 public:
  static constexpr int kMaxDepth = 64;
  static constexpr int kMaxWhitespaceRun = 32;

  // True if every byte extends a valid prefix (the state then includes them); false leaves
  // the state unusable (callers feed a copy).
  bool Feed(std::string_view bytes);
  bool done() const { return mode_ == Mode::kDone; }
  // Inside a string with no escape or UTF-8 sequence pending: any run of bytes without
  // '"', '\\' or controls that is whole UTF-8 keeps the state valid.
  bool in_plain_string() const { return mode_ == Mode::kString && utf8_left_ == 0; }

  std::string Serialize() const;
  bool Restore(std::string_view bytes);

 private:
  enum class Mode : uint8_t {
    kStart,        // before the top-level '{'
    kValue,        // a value is expected
    kValueOrEnd,   // just after '[': a value or ']'
    kKeyOrClose,   // just after '{': '"' or '}'
    kKey,          // after ',' in an object: '"'
    kColon,        // after a key
    kAfterValue,   // ',' or the container's closer
    kString,
    kEscape,       // after '\'
    kUnicode,      // inside \uXXXX (aux: hex digits still expected)
    kLowBackslash, // a high surrogate was read: '\' of its low surrogate must follow
    kLowU,         // ... then 'u'
    kNumMinus,     // '-': a digit must follow
    kNumZero,      // a leading 0
    kNumInt,       // integer digits
    kNumDot,       // '.': a digit must follow
    kNumFrac,
    kNumExp,       // 'e': sign or digit
    kNumExpSign,   // sign: a digit must follow
    kNumExpDigits,
    kLiteral,      // inside true / false / null (aux: which, pos: next letter)
    kDone,
  };

  bool Byte(uint8_t c);
  bool EndValue();                // a scalar or container ended: what the parent expects next
  bool NumberEnd(uint8_t c);      // a number ended at c, which is then handled as structure
  bool Structural(uint8_t c);     // whitespace, ',', ':', '}', ']' after a value
  bool Space() { return ++ws_run_ <= kMaxWhitespaceRun; }
  bool Open(bool object);
  bool Close(bool object);
  bool in_object() const { return depth_ > 0 && ((stack_ >> (depth_ - 1)) & 1u) != 0; }

  Mode mode_ = Mode::kStart;
  uint8_t depth_ = 0;
  uint8_t aux_ = 0;          // kUnicode: hex digits left; kLiteral: which literal
  uint8_t pos_ = 0;          // kLiteral: next letter
  uint8_t utf8_left_ = 0;    // kString: continuation bytes still expected
  uint8_t utf8_lo_ = 0x80;   // allowed range of the next continuation byte
  uint8_t utf8_hi_ = 0xBF;
  bool key_ = false;         // the string being read is an object key
  bool low_ = false;         // the \uXXXX being read must be a low surrogate
  uint16_t hex_ = 0;         // the \uXXXX value so far
  uint8_t ws_run_ = 0;       // whitespace bytes since the last other byte (outside strings)
  uint64_t stack_ = 0;       // bit d: level d is an object (1) or an array (0)
};

}  // namespace dsv3
