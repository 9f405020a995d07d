// What one request measured, whichever client sent it (HTTP/SSE or gRPC).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dsv3::bench {

enum class RequestOutcome {
  kCompleted,       // the whole answer arrived ([DONE] / the stream's end with a finish reason)
  kFailed,          // HTTP or gRPC error, error event, malformed stream, per-request timeout
  kCutByDeadline,   // still running when --duration-s ran out (cancelled)
};

struct RequestResult {
  RequestOutcome outcome = RequestOutcome::kFailed;
  std::string error;           // failures: a short reason ("HTTP 429: ...", "timeout", ...)
  double start_s = 0;          // send time, seconds from the start of the run
  double ttft_s = -1;          // first chunk carrying tokens; -1 if none arrived
  double e2e_s = 0;            // send -> last byte of the answer
  std::vector<double> itl_s;   // gaps between consecutive token-carrying chunks
  int64_t prompt_tokens = 0;   // from usage
  int64_t output_tokens = 0;   // from usage (token-carrying chunks when usage is missing)
  bool usage_reported = false;
};

}  // namespace dsv3::bench
