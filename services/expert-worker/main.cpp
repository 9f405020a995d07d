// dsv3-expert-worker: hosts a slice of the routed experts of every MoE layer.
//   dsv3-expert-worker --model DIR --experts 0-127 --listen 127.0.0.1:PORT
//                      [--transport grpc|ucx] [--threads N] [--worker-id NAME] [--skip-compute]
// Prints "listening on HOST:PORT" once serving (PORT 0 picks a free port).
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/util/allocator_tuning.h"
#include "common/util/flag_reader.h"
#include <thread>

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "common/metrics/metrics_server.h"
#include "services/expert-worker/expert_grpc_service.h"
#include "services/expert-worker/expert_metrics.h"
#include "services/expert-worker/expert_ucx_server.h"
#ifdef DSV3_HAVE_NCCL
#include "services/expert-worker/expert_nccl_server.h"
#endif

namespace {

volatile std::sig_atomic_t g_stop = 0;  // set by the signal handler only
void OnSignal(int) { g_stop = 1; }

void Usage() {
  std::fprintf(stderr,
               "usage: dsv3-expert-worker --model DIR [--experts 0-127|all] [--listen 127.0.0.1:0]\n"
               "       [--transport grpc|ucx] [--threads N] [--worker-id NAME] [--skip-compute]\n"
               "       [--metrics-listen HOST:PORT | --metrics-port P] [--drain-seconds S (30)]\n");
}

}  // namespace

int main(int argc, char** argv) {
  using namespace dsv3;
  dsv3::TuneAllocatorForLargeBuffers();
  ExpertWorkerOptions opts;
  std::string listen = "127.0.0.1:0", transport = "grpc", metrics_listen;
  int64_t drain_seconds = 30;
  FlagReader flags(argc, argv);
  while (flags.Next()) {
    const std::string& k = flags.flag();
    auto next = [&] { return flags.Value(); };
    if (k == "--model") opts.model_dir = next();
    else if (k == "--experts") opts.experts = next();
    else if (k == "--listen") listen = next();
    else if (k == "--transport") transport = next();
    else if (k == "--threads") opts.threads = static_cast<int>(flags.IntValue());
    else if (k == "--worker-id") opts.worker_id = next();
    else if (k == "--skip-compute") opts.skip_compute = true;
    else if (k == "--drain-seconds") drain_seconds = flags.IntValue();
    else if (k == "--metrics-listen") metrics_listen = next();
    else if (k == "--metrics-port") metrics_listen = "0.0.0.0:" + next();
    else if (k == "--help" || k == "-h") { Usage(); return 0; }
    else {
      std::fprintf(stderr, "error: unknown option %s\n", k.c_str());
      Usage();
      return 2;
    }
  }
  if (opts.model_dir.empty() || (transport != "grpc" && transport != "ucx")) {
    Usage();
    return 2;
  }
  if (opts.worker_id.empty()) opts.worker_id = "expert-worker[" + opts.experts + "]";
  // The metrics object must exist before the worker serves its first batch.
  std::unique_ptr<ExpertMetrics> metrics;
  if (!metrics_listen.empty()) {
    metrics = std::make_unique<ExpertMetrics>(opts.worker_id.empty() ? "expert-worker[" + opts.experts + "]" : opts.worker_id,
                                              transport);
    opts.on_batch = [m = metrics.get()](int64_t tokens, double seconds, bool ok) { m->OnBatch(tokens, seconds, ok); };
  }
  auto worker = ExpertWorker::Create(opts);
  if (!worker.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(worker.status().message()).c_str());
    return 1;
  }
  ExpertGrpcService service(**worker);
  std::unique_ptr<ExpertUcxServer> ucx;
  if (transport == "ucx") {
    auto u = ExpertUcxServer::Start(**worker);
    if (!u.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(u.status().message()).c_str());
      return 1;
    }
    ucx = std::move(*u);
    service.ucx_address = ucx->address();
    service.on_connect_ucx = [&](const expert::v1::ConnectUcxRequest& r) { return ucx->RegisterClient(r); };
  }
#ifdef DSV3_HAVE_NCCL
  // NCCL is offered whenever built; ConnectNccl refuses clearly on machines without a GPU.
  ExpertNcclServer nccl(**worker);
  service.on_connect_nccl = [&](const expert::v1::ConnectNcclRequest& r) { return nccl.Connect(r); };
#endif
  std::unique_ptr<MetricsServer> metrics_server;
  if (metrics) {
    metrics->SetHosted(FormatExpertRanges((*worker)->experts()), static_cast<int64_t>((*worker)->experts().size()));
    auto ms = MetricsServer::Start(metrics_listen, metrics->registry());
    if (!ms.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(ms.status().message()).c_str());
      return 1;
    }
    metrics_server = std::move(*ms);
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int port = 0;
  // gRPC sets SO_REUSEPORT by default, which lets a second worker bind a port that is
  // already serving and silently take half its connections: a taken port must be an error.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(static_cast<int>(kMaxWireMessageBytes + (1 << 20)));
  builder.SetMaxSendMessageSize(static_cast<int>(kMaxWireMessageBytes + (1 << 20)));
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::fprintf(stderr, "error: cannot listen on %s (port already in use, or not a host:port?)\n", listen.c_str());
    return 1;
  }
  const std::string host = listen.substr(0, listen.rfind(':'));
  std::fprintf(stderr, "dsv3-expert-worker: experts %s of %lld, %llu weight bytes mapped, transport %s\n",
               FormatExpertRanges((*worker)->experts()).c_str(), static_cast<long long>((*worker)->config().n_routed_experts),
               static_cast<unsigned long long>((*worker)->resident_weight_bytes()), transport.c_str());
  if (metrics_server) std::printf("metrics listening on %s\n", metrics_server->address().c_str());
  std::printf("listening on %s:%d\n", host.c_str(), port);
  std::fflush(stdout);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  // Drain: not serving (health, Describe), new batches answered UNAVAILABLE so the
  // attention side moves them to a replica, the batch in hand finishes.
  (*worker)->BeginDrain();
  server->GetHealthCheckService()->SetServingStatus(false);
  const auto drain_end = std::chrono::steady_clock::now() + std::chrono::seconds(std::max<int64_t>(0, drain_seconds));
  while ((*worker)->in_flight() > 0 && std::chrono::steady_clock::now() < drain_end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::fprintf(stderr, "dsv3-expert-worker: %s\n", (*worker)->in_flight() == 0 ? "drained" : "drain timeout");
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  return 0;
}
