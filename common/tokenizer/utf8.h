// UTF-8 helpers shared by the tokenizer, the incremental detokenizer and the chat template.
// Validation is strict (no overlongs, no surrogates, nothing above U+10FFFF) because every
// later stage (PCRE2 with NO_UTF_CHECK, byte-level BPE) relies on well-formed input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace dsv3::utf8 {

// Returns true when `text` is well-formed UTF-8. On failure *error_offset (if given) is the
// byte offset of the first ill-formed sequence.
bool IsValid(std::string_view text, size_t* error_offset = nullptr);

// Appends `bytes` to *out as valid UTF-8, replacing each maximal ill-formed subpart with
// U+FFFD (the Unicode / WHATWG TextDecoder convention the reference decoders follow).
// When `final` is false a trailing sequence that is incomplete but could still become valid
// is left unconsumed. Returns the number of bytes consumed.
size_t AppendLossy(std::string_view bytes, std::string* out, bool final);

// Decodes the code point starting at text[pos] (text must be valid UTF-8) and advances pos.
char32_t DecodeAt(std::string_view text, size_t* pos);

// Appends the UTF-8 encoding of `cp` (must be a scalar value) to *out.
void Append(char32_t cp, std::string* out);

// Number of code points in valid UTF-8 text.
size_t Length(std::string_view text);

}  // namespace dsv3::utf8
