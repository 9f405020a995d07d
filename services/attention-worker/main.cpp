// dsv3-attention-worker: the serving engine (MLA + dense layers, scheduler, paged KV,
// sampling) behind the AttentionService gRPC API; routed experts in-process or in expert
// workers.
//   dsv3-attention-worker --model DIR [--role prefill|decode|both] [--listen 127.0.0.1:0]
//       [--expert-workers h:p,...] [--expert-transport grpc|ucx] [--threads N]
//       [--kv-cache-bytes B] [--block-size N] [--max-batch-tokens T] [--max-running R]
//       [--max-model-len N] [--model-name NAME] [--worker-id ID] [--expert-timeout-ms MS]
// Prints "listening on HOST:PORT" once serving (PORT 0 picks a free port).
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_split.h"
#include "common/engine/model_instance.h"
#include "common/metrics/metrics_server.h"
#include "common/util/allocator_tuning.h"
#include "common/util/flag_reader.h"
#include "services/attention-worker/attention_service.h"

namespace {

volatile std::sig_atomic_t g_stop = 0;  // set by the signal handler only
void OnSignal(int) { g_stop = 1; }

void Usage() {
  std::fprintf(stderr,
               "usage: dsv3-attention-worker --model DIR [--role prefill|decode|both] [--listen 127.0.0.1:0]\n"
               "       [--expert-workers h:p,...] [--expert-transport grpc|ucx] [--threads N]\n"
               "       [--kv-cache-bytes B] [--block-size N] [--max-batch-tokens T] [--max-running R]\n"
               "       [--max-model-len N] [--model-name NAME] [--worker-id ID] [--expert-timeout-ms MS]\n"
               "       [--max-queued-requests N (1024)] [--max-queued-prompt-tokens N (1048576)]\n"
               "       [--max-exact-replay-tokens N (256)]\n"
               "       [--expert-failover-ms MS (3000)] [--expert-grace-ms MS (0)] [--drain-seconds S (30)]\n"
               "       [--metrics-listen HOST:PORT | --metrics-port P] [--expert-metrics auto|off|group|expert]\n");
}


}  // namespace

int main(int argc, char** argv) {
  using namespace dsv3;
  TuneAllocatorForLargeBuffers();
  ModelInstanceOptions mopts;
  EngineConfig ecfg;
  AttentionServiceOptions sopts;
  std::string listen = "127.0.0.1:0", transport = "grpc", workers, metrics_listen, expert_metrics = "auto";
  int64_t threads = 0, expert_timeout_ms = 0, expert_failover_ms = 3000, expert_grace_ms = 0, drain_seconds = 30;
  FlagReader flags(argc, argv);
  while (flags.Next()) {
    const std::string& k = flags.flag();
    auto next = [&] { return flags.Value(); };
    auto next_int = [&](int64_t* out) { *out = flags.IntValue(); };
    if (k == "--model") mopts.model_dir = next();
    else if (k == "--role") ecfg.role = next();
    else if (k == "--listen") listen = next();
    else if (k == "--expert-workers") workers = next();
    else if (k == "--expert-transport") transport = next();
    else if (k == "--threads") next_int(&threads);
    else if (k == "--kv-cache-bytes") next_int(&ecfg.kv_cache_bytes);
    else if (k == "--block-size") next_int(&ecfg.block_size);
    else if (k == "--max-batch-tokens") next_int(&ecfg.scheduler.max_batch_tokens);
    else if (k == "--max-running") next_int(&ecfg.scheduler.max_running);
    else if (k == "--max-queued-requests") next_int(&ecfg.max_queued_requests);
    else if (k == "--max-queued-prompt-tokens") next_int(&ecfg.max_queued_prompt_tokens);
    else if (k == "--max-exact-replay-tokens") next_int(&ecfg.max_exact_replay_tokens);
    else if (k == "--max-model-len") next_int(&ecfg.max_model_len);
    else if (k == "--model-name") sopts.model_name = next();
    else if (k == "--worker-id") ecfg.worker_id = next();
    else if (k == "--expert-timeout-ms") next_int(&expert_timeout_ms);
    else if (k == "--expert-failover-ms") next_int(&expert_failover_ms);
    else if (k == "--expert-grace-ms") next_int(&expert_grace_ms);
    else if (k == "--drain-seconds") next_int(&drain_seconds);
    else if (k == "--metrics-listen") metrics_listen = next();
    else if (k == "--metrics-port") metrics_listen = "0.0.0.0:" + next();
    else if (k == "--expert-metrics") expert_metrics = next();
    else if (k == "--help" || k == "-h") { Usage(); return 0; }
    else {
      std::fprintf(stderr, "error: unknown option %s\n", k.c_str());
      Usage();
      return 2;
    }
  }
  if (mopts.model_dir.empty()) {
    Usage();
    return 2;
  }
  if (expert_failover_ms < 1 || expert_grace_ms < 0 || drain_seconds < 0) {
    std::fprintf(stderr, "error: --expert-failover-ms must be >= 1, --expert-grace-ms and --drain-seconds >= 0\n");
    return 2;
  }
  if (ecfg.role != "prefill" && ecfg.role != "decode" && ecfg.role != "both") {
    std::fprintf(stderr, "error: --role must be prefill, decode or both, got '%s'\n", ecfg.role.c_str());
    return 2;
  }
  mopts.backend.threads = static_cast<int>(threads);
  if (!workers.empty()) {
    for (auto w : absl::StrSplit(workers, ',', absl::SkipEmpty())) mopts.expert_workers.emplace_back(w);
    auto tr = ParseExpertTransport(transport);
    if (!tr.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(tr.status().message()).c_str());
      return 2;
    }
    mopts.cluster.transport = *tr;
    if (expert_timeout_ms > 0) mopts.cluster.dispatch.timeout = std::chrono::milliseconds(expert_timeout_ms);
    mopts.cluster.dispatch.failover_after = std::chrono::milliseconds(expert_failover_ms);
    mopts.cluster.dispatch.restart_grace = std::chrono::milliseconds(expert_grace_ms);
  }
  ecfg.tokenizer_dir = mopts.model_dir;  // tokenizer.json, for json_object requests
  auto inst = LoadModelInstance(mopts);
  if (!inst.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(inst.status().message()).c_str());
    return 1;
  }
  // Metrics observe the engine from its first step.
  std::unique_ptr<AttentionMetrics> metrics;
  std::unique_ptr<MetricsServer> metrics_server;
  if (!metrics_listen.empty()) {
    AttentionMetricsOptions mo;
    mo.worker_id = ecfg.worker_id;
    mo.role = ecfg.role;
    mo.expert_transport = workers.empty() ? "in-process" : transport;
    const ModelConfig& mc = (*inst)->config();
    if (expert_metrics == "auto") {
      mo.resolution = mc.num_hidden_layers * mc.n_routed_experts <= 4096 ? ExpertMetricsResolution::kExpert
                                                                         : ExpertMetricsResolution::kGroup;
    } else if (expert_metrics == "off" || expert_metrics == "group" || expert_metrics == "expert") {
      mo.resolution = expert_metrics == "off"     ? ExpertMetricsResolution::kOff
                      : expert_metrics == "group" ? ExpertMetricsResolution::kGroup
                                                  : ExpertMetricsResolution::kExpert;
    } else {
      std::fprintf(stderr, "error: --expert-metrics must be auto, off, group or expert\n");
      return 2;
    }
    metrics = std::make_unique<AttentionMetrics>(mc, mo);
    auto ms = MetricsServer::Start(metrics_listen, metrics->registry());
    if (!ms.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(ms.status().message()).c_str());
      return 1;
    }
    metrics_server = std::move(*ms);
    ecfg.observer = metrics.get();
  }
  auto engine = Engine::Create(*(*inst)->model, ecfg);
  if (!engine.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(engine.status().message()).c_str());
    return 1;
  }
  AttentionService service(**engine, sopts);
  if (metrics) {
    metrics->Attach(engine->get(), (*inst)->dispatcher.get());
    service.set_metrics(metrics.get());
  }
  // Decode-capable workers accept KV over UCX too (gRPC PushKv is always there).
  std::unique_ptr<KvUcxServer> ucx;
  if (ecfg.role != "prefill") {
    auto u = KvUcxServer::Start(**engine, (*inst)->config().Fingerprint());
    if (u.ok()) {
      ucx = std::move(*u);
      service.set_ucx_address(ucx->address());
    } else {
      std::fprintf(stderr, "dsv3-attention-worker: UCX KV transfer unavailable (%s); gRPC only\n",
                   std::string(u.status().message()).c_str());
    }
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int port = 0;
  // gRPC sets SO_REUSEPORT by default, which lets a second worker bind a port that is
  // already serving and silently take half its connections: a taken port must be an error.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.SetMaxSendMessageSize(64 << 20);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::fprintf(stderr, "error: cannot listen on %s (port already in use, or not a host:port?)\n", listen.c_str());
    return 1;
  }
  const EngineLoad l = (*engine)->load();
  std::fprintf(stderr,
               "dsv3-attention-worker: role %s, %lld KV blocks of %lld positions, context %lld, experts %s\n",
               ecfg.role.c_str(), static_cast<long long>(l.kv_blocks_total), static_cast<long long>(ecfg.block_size),
               static_cast<long long>((*engine)->max_context()), workers.empty() ? "in-process" : workers.c_str());
  const std::string host = listen.substr(0, listen.rfind(':'));
  if (metrics_server) std::printf("metrics listening on %s\n", metrics_server->address().c_str());
  std::printf("listening on %s:%d\n", host.c_str(), port);
  std::fflush(stdout);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  // Drain: not ready (health and load polls), no new work, in-flight requests and KV
  // already pushed here finish, up to --drain-seconds.
  service.BeginDrain();
  server->GetHealthCheckService()->SetServingStatus(false);
  const auto drain_end = std::chrono::steady_clock::now() + std::chrono::seconds(drain_seconds);
  std::fprintf(stderr, "dsv3-attention-worker: draining (up to %lld s)\n", static_cast<long long>(drain_seconds));
  for (;;) {
    const EngineLoad now = (*engine)->load();
    const bool idle = service.active_calls() == 0 && now.waiting == 0 && now.running == 0 && now.parked_imports == 0;
    if (idle || std::chrono::steady_clock::now() >= drain_end) {
      std::fprintf(stderr, "dsv3-attention-worker: %s\n", idle ? "drained" : "drain timeout: stopping the rest");
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  ucx.reset();
  engine->reset();  // stops the engine thread before the metrics it reports to
  return 0;
}
