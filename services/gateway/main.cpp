// dsv3-gateway: OpenAI-compatible REST API in front of the attention workers.
//   dsv3-gateway --listen HOST:PORT --model-name NAME --tokenizer DIR
//                (--workers H:P,... | --prefill-workers H:P,... --decode-workers H:P,...) [...]
// Prints "gateway listening on http://HOST:PORT" once it accepts connections; SIGINT or
// SIGTERM drain it: /ready 503, no new connections, running requests finish for up to
// --drain-seconds, then the rest are cancelled (workers free them), exit 0.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "common/chat_template/chat_template.h"
#include "common/tokenizer/bpe_tokenizer.h"
#include "services/gateway/api_keys.h"
#include "services/gateway/gateway_config.h"
#include "services/gateway/gateway_metrics.h"
#include "services/gateway/http_server.h"
#include "services/gateway/openai_api.h"
#include "services/gateway/router.h"

namespace {

volatile std::sig_atomic_t g_stop = 0;  // written by the signal handler only
void OnSignal(int) { g_stop = 1; }

int Fail(const std::string& msg) {
  std::fprintf(stderr, "dsv3-gateway: error: %s\n", msg.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace dsv3;
  using namespace dsv3::gateway;
  auto config = ParseGatewayFlags(std::vector<std::string>(argv, argv + argc));
  if (!config.ok()) {
    if (config.status().code() == absl::StatusCode::kNotFound) {
      std::fputs(GatewayUsage().c_str(), stdout);
      return 0;
    }
    std::fprintf(stderr, "dsv3-gateway: %s\n%s", std::string(config.status().message()).c_str(), GatewayUsage().c_str());
    return 2;
  }
  const char* env_keys = std::getenv("DSV3_API_KEYS");
  auto keys = ApiKeys::Load(config->api_keys, env_keys ? env_keys : "", config->api_key_file);
  if (!keys.ok()) return Fail(std::string(keys.status().message()));
  auto tokenizer = BpeTokenizer::FromDirectory(config->tokenizer_dir);
  if (!tokenizer.ok()) return Fail(std::string(tokenizer.status().message()));
  auto chat = ChatTemplate::FromTokenizerConfigDir(config->tokenizer_dir);
  if (!chat.ok()) return Fail(std::string(chat.status().message()));

  GatewayMetrics metrics;
  Router router(config->router, &metrics);
  // The first poll round before listening: a (re)started gateway knows its workers before
  // its first request, instead of answering 503 for a poll interval.
  router.Start(/*wait_first_poll=*/true);
  const size_t num_keys = keys->size();
  OpenAiApi api(*config, **tokenizer, **chat, router, metrics, std::move(*keys));
  HttpServer server(*config, api, metrics);
  auto port = server.Listen();
  if (!port.ok()) return Fail(std::string(port.status().message()));
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGPIPE, SIG_IGN);
  server.Run();
  std::fprintf(stderr, "dsv3-gateway: model %s, %zu %s worker(s), API keys %s, %d HTTP threads\n",
               config->model_name.c_str(),
               config->router.workers.size() + config->router.prefill_workers.size() + config->router.decode_workers.size(),
               router.disaggregated() ? "prefill/decode" : "colocated", num_keys ? "on" : "off", config->http_threads);
  std::printf("gateway listening on http://%s:%d\n", config->listen_host.c_str(), *port);
  std::fflush(stdout);
  while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  // Drain: not ready, no new connections, running requests finish (up to --drain-seconds).
  api.BeginDrain();
  server.StopListening();
  std::fprintf(stderr, "dsv3-gateway: draining %lld request(s), up to %d s\n",
               static_cast<long long>(metrics.in_flight().Value()), config->drain_seconds);
  const auto drain_end = std::chrono::steady_clock::now() + std::chrono::seconds(config->drain_seconds);
  while (metrics.in_flight().Value() > 0 && std::chrono::steady_clock::now() < drain_end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::fprintf(stderr, "dsv3-gateway: stopping\n");
  server.StopAccepting();
  // Let cancelled requests unwind (their gRPC calls complete) before the threads stop.
  // Short: the drain already waited; Kubernetes' grace period is drainSeconds + 5 in all.
  for (int i = 0; i < 10 && metrics.in_flight().Value() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  server.Join();
  router.Stop();
  return 0;
}
