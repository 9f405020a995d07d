// Request bodies: bounded JSON parsing and typed field access that names the offending
// parameter. Unknown fields are ignored by every reader (OpenAI clients send extras).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "services/gateway/openai_errors.h"

// Returns the ApiError of `expr` (an std::optional<ApiError>) when it holds one.
#define GW_RETURN_IF_ERROR(expr)                           \
  do {                                                     \
    if (auto gw_err_ = (expr)) return std::move(*gw_err_); \
  } while (0)

namespace dsv3::gateway {

using Json = nlohmann::ordered_json;

// Parses a request body that must be one JSON object. Nesting deeper than `max_depth` is
// refused before the parser runs (a scan over the bytes), so hostile inputs cost O(n) and
// never recurse; malformed JSON and invalid UTF-8 in strings are 400s, never exceptions.
ApiOr<Json> ParseJsonObject(std::string_view body, int max_depth = 64);

// Deepest bracket nesting of `text`, ignoring brackets inside strings.
int JsonNestingDepth(std::string_view text);

// Serialises for the wire; invalid UTF-8 (e.g. a token that is half a character) is
// replaced with U+FFFD instead of throwing.
std::string DumpJson(const Json& j);

// Typed readers. Absent or null fields leave *out unchanged and return nullopt; a present
// field of the wrong type is a 400 naming `param` (defaults to the key).
std::optional<ApiError> ReadBool(const Json& obj, const char* key, bool* out);
std::optional<ApiError> ReadNumber(const Json& obj, const char* key, double* out);
// Integers; floats with an integral value (e.g. 16.0) are accepted as JavaScript sends them.
std::optional<ApiError> ReadInt(const Json& obj, const char* key, int64_t* out);
std::optional<ApiError> ReadString(const Json& obj, const char* key, std::string* out);

// "'key' must be ..." style range errors.
ApiError RangeError(std::string_view param, std::string_view what);

}  // namespace dsv3::gateway
