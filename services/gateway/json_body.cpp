#include "services/gateway/json_body.h"

#include <cmath>

namespace dsv3::gateway {

int JsonNestingDepth(std::string_view text) {
  int depth = 0, max_depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '{' || c == '[') max_depth = std::max(max_depth, ++depth);
    else if ((c == '}' || c == ']') && depth > 0) --depth;
  }
  return max_depth;
}

ApiOr<Json> ParseJsonObject(std::string_view body, int max_depth) {
  if (body.empty()) return BadRequestNoParam("request body is empty; expected a JSON object");
  if (JsonNestingDepth(body) > max_depth) {
    return BadRequestNoParam(StrCat("JSON nesting is deeper than ", max_depth, " levels"));
  }
  Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    // Parse again for the reason only; the exception never leaves this function.
    std::string why = "malformed JSON";
    try {
      const Json again = Json::parse(body);
      (void)again;
    } catch (const nlohmann::json::parse_error& e) {
      const std::string what = e.what();
      why = what.find("UTF-8") != std::string::npos ? StrCat("invalid UTF-8 in request body: ", what)
                                                     : StrCat("malformed JSON in request body: ", what);
    } catch (const std::exception& e) {
      why = StrCat("malformed JSON in request body: ", e.what());
    }
    return BadRequestNoParam(std::move(why));
  }
  if (!j.is_object()) return BadRequestNoParam("request body must be a JSON object");
  return j;
}

std::string DumpJson(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

namespace {
const char* TypeName(const Json& v) {
  if (v.is_string()) return "a string";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number()) return "a number";
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  return "null";
}
ApiError TypeError(const char* key, const char* expected, const Json& got) {
  return BadRequest(key, StrCat("'", key, "' must be ", expected, ", got ", TypeName(got)));
}
}  // namespace

std::optional<ApiError> ReadBool(const Json& obj, const char* key, bool* out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::nullopt;
  if (!it->is_boolean()) return TypeError(key, "a boolean", *it);
  *out = it->get<bool>();
  return std::nullopt;
}

std::optional<ApiError> ReadNumber(const Json& obj, const char* key, double* out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::nullopt;
  if (!it->is_number()) return TypeError(key, "a number", *it);
  const double v = it->get<double>();
  if (!std::isfinite(v)) return BadRequest(key, StrCat("'", key, "' must be finite"));
  *out = v;
  return std::nullopt;
}

std::optional<ApiError> ReadInt(const Json& obj, const char* key, int64_t* out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::nullopt;
  if (it->is_number_integer()) {
    if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      return BadRequest(key, StrCat("'", key, "' is out of range"));
    }
    *out = it->get<int64_t>();
    return std::nullopt;
  }
  if (it->is_number_float()) {
    const double v = it->get<double>();
    if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9.0e15) {
      *out = static_cast<int64_t>(v);
      return std::nullopt;
    }
  }
  return TypeError(key, "an integer", *it);
}

std::optional<ApiError> ReadString(const Json& obj, const char* key, std::string* out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) return TypeError(key, "a string", *it);
  *out = it->get<std::string>();
  return std::nullopt;
}

ApiError RangeError(std::string_view param, std::string_view what) {
  return BadRequest(param, StrCat("'", param, "' must be ", what));
}

}  // namespace dsv3::gateway
