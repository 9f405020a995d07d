// Command-line configuration of dsv3-gateway, parsed and checked in one place.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "common/status.h"
#include "services/gateway/router.h"

namespace dsv3::gateway {

struct GatewayConfig {
  std::string listen_host = "127.0.0.1";
  int listen_port = 8000;  // 0 picks a free port (printed when listening)
  std::string model_name;
  std::string tokenizer_dir;
  RouterOptions router;
  std::vector<std::string> api_keys;
  std::string api_key_file;
  std::vector<std::string> open_paths = {"/health", "/ready", "/metrics"};
  size_t max_body_bytes = 8u << 20;
  size_t max_header_bytes = 16u << 10;
  int max_json_depth = 64;
  int max_inflight = 256;
  int http_threads = 2;
  int header_timeout_ms = 10000;
  int body_timeout_ms = 30000;
  int idle_timeout_ms = 60000;
  int write_timeout_ms = 60000;  // a client that stops reading a stream is dropped after this
  int drain_seconds = 30;        // SIGTERM: in-flight requests may finish for this long
  std::string reasoning_parser = "auto";  // auto | deepseek-r1 | none
};

// argv[0] is skipped. "--help" yields NotFound with the usage text as the message.
StatusOr<GatewayConfig> ParseGatewayFlags(const std::vector<std::string>& args);
std::string GatewayUsage();

}  // namespace dsv3::gateway
