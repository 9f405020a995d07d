// OpenAI error objects: every non-2xx answer of the gateway is
//   {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}
// Permanent problems (bad input, unknown model, auth) are 4xx so the SDKs do not retry them;
// only capacity problems are 429/503 (with Retry-After).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "common/status.h"

namespace dsv3::gateway {

struct ApiError {
  int http_status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::optional<std::string> param;  // null in JSON when absent
  std::optional<std::string> code;
  int retry_after_s = 0;  // > 0: a Retry-After header goes with it

  std::string ToJson() const;  // the whole {"error": {...}} object
};

ApiError BadRequest(std::string_view param, std::string message);
ApiError BadRequestNoParam(std::string message);
ApiError Unauthorized(std::string message);
ApiError NotFoundError(std::string message, std::optional<std::string> code = std::nullopt);
ApiError ModelNotFound(std::string_view model);
ApiError MethodNotAllowed(std::string_view method, std::string_view path);
ApiError PayloadTooLarge(size_t limit);
ApiError TooManyRequests(std::string message, int retry_after_s);
ApiError Unavailable(std::string message, int retry_after_s);
ApiError ServerError(std::string message);

// A value or the error object to answer with.
template <typename T>
class ApiOr {
 public:
  ApiOr(T value) : v_(std::move(value)) {}  // NOLINT: implicit like StatusOr
  ApiOr(ApiError error) : v_(std::move(error)) {}  // NOLINT
  bool ok() const { return v_.index() == 0; }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  const ApiError& error() const { return std::get<1>(v_); }
  T& operator*() { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, ApiError> v_;
};

// A Status from below the edge (tokenizer, template, worker) as an error object:
// InvalidArgument -> 400 naming `param`, Unavailable -> 503, ResourceExhausted (full queues) -> 429, others 500.
ApiError FromStatus(const Status& s, std::string_view param);

}  // namespace dsv3::gateway
