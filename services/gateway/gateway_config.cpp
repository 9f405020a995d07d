#include "services/gateway/gateway_config.h"

#include <charconv>

namespace dsv3::gateway {

namespace {

std::vector<std::string> SplitList(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t comma = s.find(',', start);
    std::string item = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    while (!item.empty() && item.front() == ' ') item.erase(0, 1);
    while (!item.empty() && item.back() == ' ') item.pop_back();
    if (!item.empty()) out.push_back(item);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

Status ParseInt(const std::string& flag, const std::string& v, long long lo, long long hi, long long* out) {
  long long x = 0;
  const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
  if (ec != std::errc() || p != v.data() + v.size() || x < lo || x > hi) {
    return InvalidArgument("gateway", StrCat(flag, " must be an integer in [", lo, ", ", hi, "], got '", v, "'"));
  }
  *out = x;
  return Status();
}

}  // namespace

std::string GatewayUsage() {
  return "usage: dsv3-gateway --listen HOST:PORT --model-name NAME --tokenizer DIR\n"
         "         (--workers H:P,... | --prefill-workers H:P,... --decode-workers H:P,...)\n"
         "         [--api-key K]... [--api-key-file F] [--open-paths /health,/ready,/metrics]\n"
         "         [--max-body-bytes N] [--max-inflight N] [--http-threads N]\n"
         "         [--header-timeout-ms N] [--body-timeout-ms N] [--idle-timeout-ms N] [--write-timeout-ms N]\n"
         "         [--drain-seconds S (30: on SIGTERM, not ready, in-flight requests finish, then exit)]\n"
         "         [--reasoning-parser auto|deepseek-r1|none] [--poll-interval-ms N]\n"
         "  API keys also come from DSV3_API_KEYS (comma list); none configured = no auth.\n";
}

StatusOr<GatewayConfig> ParseGatewayFlags(const std::vector<std::string>& args) {
  GatewayConfig c;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& k = args[i];
    if (k == "--help" || k == "-h") return NotFound("gateway", GatewayUsage());
    if (i + 1 >= args.size()) return InvalidArgument("gateway", StrCat("missing value for ", k));
    const std::string v = args[++i];
    long long n = 0;
    if (k == "--listen") {
      const size_t colon = v.rfind(':');
      if (colon == std::string::npos) return InvalidArgument("gateway", "--listen must be HOST:PORT");
      c.listen_host = v.substr(0, colon);
      DSV3_RETURN_IF_ERROR(ParseInt(k, v.substr(colon + 1), 0, 65535, &n));
      c.listen_port = static_cast<int>(n);
    } else if (k == "--model-name") {
      c.model_name = v;
    } else if (k == "--tokenizer") {
      c.tokenizer_dir = v;
    } else if (k == "--workers") {
      c.router.workers = SplitList(v);
    } else if (k == "--prefill-workers") {
      c.router.prefill_workers = SplitList(v);
    } else if (k == "--decode-workers") {
      c.router.decode_workers = SplitList(v);
    } else if (k == "--api-key") {
      c.api_keys.push_back(v);
    } else if (k == "--api-key-file") {
      c.api_key_file = v;
    } else if (k == "--open-paths") {
      c.open_paths = SplitList(v);
    } else if (k == "--max-body-bytes") {
      DSV3_RETURN_IF_ERROR(ParseInt(k, v, 1, 1ll << 32, &n));
      c.max_body_bytes = static_cast<size_t>(n);
    } else if (k == "--max-inflight") {
      DSV3_RETURN_IF_ERROR(ParseInt(k, v, 1, 1000000, &n));
      c.max_inflight = static_cast<int>(n);
    } else if (k == "--http-threads") {
      DSV3_RETURN_IF_ERROR(ParseInt(k, v, 1, 256, &n));
      c.http_threads = static_cast<int>(n);
    } else if (k == "--header-timeout-ms") {
      DSV3_RETURN_IF_ERROR(ParseInt(k, v, 1, 3600000, &n));
      c.header_timeout_ms = static_cast<int>(n);
    } else if (k == "--body-timeout-ms") {
      DSV3_RETURN_IF_ERROR(ParseInt(k, v, 1, 3600000, &n));
      c.body_timeout_ms = static_cast<int>(n);
    } else if (k == "--idle-timeout-ms") {
      DSV3_RETURN_IF_ERROR(ParseInt(k, v, 1, 3600000, &n));
      c.idle_timeout_ms = static_cast<int>(n);
    } else if (k == "--drain-seconds") {
      DSV3_RETURN_IF_ERROR(ParseInt(k, v, 0, 3600, &n));
      c.drain_seconds = static_cast<int>(n);
    } else if (k == "--write-timeout-ms") {
      DSV3_RETURN_IF_ERROR(ParseInt(k, v, 1, 3600000, &n));
      c.write_timeout_ms = static_cast<int>(n);
    } else if (k == "--poll-interval-ms") {
      DSV3_RETURN_IF_ERROR(ParseInt(k, v, 10, 60000, &n));
      c.router.poll_interval = std::chrono::milliseconds(n);
    } else if (k == "--reasoning-parser") {
      if (v != "auto" && v != "deepseek-r1" && v != "none") {
        return InvalidArgument("gateway", "--reasoning-parser must be auto, deepseek-r1 or none");
      }
      c.reasoning_parser = v;
    } else {
      return InvalidArgument("gateway", StrCat("unknown option ", k));
    }
  }
  if (c.model_name.empty()) return InvalidArgument("gateway", "--model-name is required");
  if (c.tokenizer_dir.empty()) return InvalidArgument("gateway", "--tokenizer is required");
  const bool colocated = !c.router.workers.empty();
  const bool pd = !c.router.prefill_workers.empty() || !c.router.decode_workers.empty();
  if (colocated == pd) {
    return InvalidArgument("gateway", "give either --workers or both --prefill-workers and --decode-workers");
  }
  if (pd && (c.router.prefill_workers.empty() || c.router.decode_workers.empty())) {
    return InvalidArgument("gateway", "--prefill-workers and --decode-workers go together");
  }
  return c;
}

}  // namespace dsv3::gateway
