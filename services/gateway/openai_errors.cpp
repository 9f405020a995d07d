#include "services/gateway/openai_errors.h"

#include <nlohmann/json.hpp>

namespace dsv3::gateway {

std::string ApiError::ToJson() const {
  nlohmann::ordered_json e;
  e["message"] = message;
  e["type"] = type;
  e["param"] = param ? nlohmann::ordered_json(*param) : nlohmann::ordered_json(nullptr);
  e["code"] = code ? nlohmann::ordered_json(*code) : nlohmann::ordered_json(nullptr);
  nlohmann::ordered_json out;
  out["error"] = std::move(e);
  // Messages may quote client bytes: never let invalid UTF-8 turn an error into a crash.
  return out.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

ApiError BadRequest(std::string_view param, std::string message) {
  ApiError e;
  e.message = std::move(message);
  e.param = std::string(param);
  return e;
}

ApiError BadRequestNoParam(std::string message) {
  ApiError e;
  e.message = std::move(message);
  return e;
}

ApiError Unauthorized(std::string message) {
  ApiError e;
  e.http_status = 401;
  e.type = "authentication_error";
  e.code = "invalid_api_key";
  e.message = std::move(message);
  return e;
}

ApiError NotFoundError(std::string message, std::optional<std::string> code) {
  ApiError e;
  e.http_status = 404;
  e.type = "not_found_error";
  e.message = std::move(message);
  e.code = std::move(code);
  return e;
}

ApiError ModelNotFound(std::string_view model) {
  ApiError e = NotFoundError(StrCat("The model '", model, "' does not exist"), std::string("model_not_found"));
  e.type = "invalid_request_error";
  e.param = "model";
  return e;
}

ApiError MethodNotAllowed(std::string_view method, std::string_view path) {
  ApiError e;
  e.http_status = 405;
  e.message = StrCat("method ", method, " is not allowed on ", path);
  e.code = "method_not_allowed";
  return e;
}

ApiError PayloadTooLarge(size_t limit) {
  ApiError e;
  e.http_status = 413;
  e.message = StrCat("request body is larger than the limit of ", limit, " bytes");
  e.code = "payload_too_large";
  return e;
}

ApiError TooManyRequests(std::string message, int retry_after_s) {
  ApiError e;
  e.http_status = 429;
  e.type = "rate_limit_error";
  e.code = "rate_limit_exceeded";
  e.message = std::move(message);
  e.retry_after_s = retry_after_s;
  return e;
}

ApiError Unavailable(std::string message, int retry_after_s) {
  ApiError e;
  e.http_status = 503;
  e.type = "server_error";
  e.code = "service_unavailable";
  e.message = std::move(message);
  e.retry_after_s = retry_after_s;
  return e;
}

ApiError ServerError(std::string message) {
  ApiError e;
  e.http_status = 500;
  e.type = "server_error";
  e.message = std::move(message);
  return e;
}

ApiError FromStatus(const Status& s, std::string_view param) {
  const std::string msg(s.message());
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kUnimplemented:
      return param.empty() ? BadRequestNoParam(msg) : BadRequest(param, msg);
    case absl::StatusCode::kNotFound:
      return NotFoundError(msg);
    case absl::StatusCode::kUnavailable:
      return Unavailable(msg, 1);
    case absl::StatusCode::kResourceExhausted:  // every worker's queue is full: back off
      return TooManyRequests(msg, 1);
    default:
      return ServerError(msg);
  }
}

}  // namespace dsv3::gateway
