// The JSON body of one streamed request: /v1/completions with the prompt as a list of
// token ids, or /v1/chat/completions with one user message; always
// stream + stream_options.include_usage so the answer reports the token counts.
#pragma once

#include <string>

#include "tools/bench-serving/bench_options.h"
#include "tools/bench-serving/workload.h"

namespace dsv3::bench {

std::string EndpointPath(const BenchOptions& o);
std::string BuildRequestBody(const BenchOptions& o, const RequestSpec& r);

}  // namespace dsv3::bench
