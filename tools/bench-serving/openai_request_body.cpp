#include "tools/bench-serving/openai_request_body.h"

#include <nlohmann/json.hpp>

namespace dsv3::bench {

std::string EndpointPath(const BenchOptions& o) {
  return o.url.prefix + (o.endpoint == Endpoint::kChat ? "/v1/chat/completions" : "/v1/completions");
}

std::string BuildRequestBody(const BenchOptions& o, const RequestSpec& r) {
  nlohmann::json b;
  b["model"] = o.model;
  if (o.endpoint == Endpoint::kChat) {
    b["messages"] = nlohmann::json::array({{{"role", "user"}, {"content", r.prompt_text}}});
  } else {
    b["prompt"] = r.prompt_ids;
  }
  b["max_tokens"] = r.output_len;
  b["temperature"] = o.temperature;
  b["stream"] = true;
  b["stream_options"] = {{"include_usage", true}};
  // vLLM's extension, accepted by the dsv3 gateway: generate exactly max_tokens.
  if (o.ignore_eos) b["ignore_eos"] = true;
  return b.dump();
}

}  // namespace dsv3::bench
