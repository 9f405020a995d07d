// Status values that carry errors from the checkpoint loader, the model and the services
// up to the API edge (gRPC status / OpenAI error object). Nothing below the edge throws
// across a module boundary, and bad input never aborts a process.
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

#include <string>
#include <string_view>
#include <type_traits>

namespace dsv3 {

using Status = absl::Status;
template <typename T>
using StatusOr = absl::StatusOr<T>;

// StrCat for messages. Debian's Abseil is built without std::string_view aliasing, so
// StrCat does not take std::string_view; this one takes both, numbers and chars.
namespace str_internal {
inline void Append(std::string* out, std::string_view s) { out->append(s.data(), s.size()); }
inline void Append(std::string* out, absl::string_view s) { out->append(s.data(), s.size()); }
inline void Append(std::string* out, const std::string& s) { out->append(s); }
inline void Append(std::string* out, const char* s) { out->append(s); }
inline void Append(std::string* out, char c) { out->push_back(c); }
template <typename T, typename = std::enable_if_t<std::is_arithmetic_v<T>>>
inline void Append(std::string* out, T v) {
  if constexpr (std::is_same_v<T, bool>) {
    out->append(v ? "true" : "false");
  } else if constexpr (std::is_floating_point_v<T>) {
    out->append(std::to_string(v));
  } else {
    out->append(std::to_string(v));
  }
}
}  // namespace str_internal

template <typename... Args>
std::string StrCat(const Args&... args) {
  std::string out;
  (str_internal::Append(&out, args), ...);
  return out;
}
template <typename... Args>
void StrAppend(std::string* out, const Args&... args) {
  (str_internal::Append(out, args), ...);
}

// Subsystem prefixes keep messages greppable in logs: "checkpoint: ...", "config: ...".
inline Status InvalidArgument(std::string_view subsystem, std::string_view msg) {
  return absl::InvalidArgumentError(StrCat(subsystem, ": ", msg));
}
inline Status DataLoss(std::string_view subsystem, std::string_view msg) {
  return absl::DataLossError(StrCat(subsystem, ": ", msg));
}
inline Status NotFound(std::string_view subsystem, std::string_view msg) {
  return absl::NotFoundError(StrCat(subsystem, ": ", msg));
}
inline Status Unimplemented(std::string_view subsystem, std::string_view msg) {
  return absl::UnimplementedError(StrCat(subsystem, ": ", msg));
}
inline Status Internal(std::string_view subsystem, std::string_view msg) {
  return absl::InternalError(StrCat(subsystem, ": ", msg));
}

}  // namespace dsv3

#define DSV3_CONCAT_INNER(a, b) a##b
#define DSV3_CONCAT(a, b) DSV3_CONCAT_INNER(a, b)

#define DSV3_RETURN_IF_ERROR(expr)                  \
  do {                                              \
    ::absl::Status dsv3_status_ = (expr);           \
    if (!dsv3_status_.ok()) return dsv3_status_;    \
  } while (0)

#define DSV3_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(*tmp)

#define DSV3_ASSIGN_OR_RETURN(lhs, expr) \
  DSV3_ASSIGN_OR_RETURN_IMPL(DSV3_CONCAT(dsv3_statusor_, __LINE__), lhs, expr)
