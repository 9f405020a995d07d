// dsv3-launch: starts a whole dsv3 cluster on this machine from a cluster description
// (deploy/cluster/local.json; the same schema the Helm chart reads): expert workers, the
// attention workers (prefill + decode, or colocated), then the gateway; waits until the
// gateway reports ready, prints how to call it, then supervises: a process that dies is
// restarted on its address with exponential backoff while the others keep serving
// (docs/RELIABILITY.md); Ctrl-C stops everything.
//   dsv3-launch --cluster FILE [--model DIR] [--model-name NAME] [--port P] [--api-key K]
//               [--host 127.0.0.1] [--auto-ports] [--bin-dir DIR] [--log-dir DIR]
// --auto-ports gives every internal process a free port (tests, several clusters at once).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "common/util/flag_reader.h"
#include "tools/launch/cluster_spec.h"
#include "tools/launch/process_group.h"

namespace {

volatile std::sig_atomic_t g_stop = 0;  // set by the signal handler only
volatile std::sig_atomic_t g_sender = 0;
void OnSignal(int sig, siginfo_t* info, void*) {
  g_stop = sig;
  g_sender = info ? info->si_pid : 0;
}

void Usage() {
  std::fprintf(stderr,
               "usage: dsv3-launch --cluster FILE [--model DIR] [--model-name NAME] [--port P] [--api-key K]\n"
               "                   [--host 127.0.0.1] [--auto-ports] [--bin-dir DIR] [--log-dir DIR]\n"
               "                   [--targets-file FILE]   (Prometheus file_sd targets of every process)\n");
}

std::string RandomKey() {
  unsigned char b[18];
  const int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0 || read(fd, b, sizeof(b)) != static_cast<ssize_t>(sizeof(b))) {
    if (fd >= 0) close(fd);
    return "";
  }
  close(fd);
  static const char* kHex = "0123456789abcdef";
  std::string k = "sk-dsv3-";
  for (unsigned char c : b) {
    k += kHex[c >> 4];
    k += kHex[c & 15];
  }
  return k;
}

// GET path on host:port; the HTTP status or -1.
int HttpStatus(const std::string& host, int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, host.c_str(), &a.sin_addr);
  timeval tv{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  int status = -1;
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
    const std::string req = "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n";
    if (write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size())) {
      char buf[64] = {0};
      if (read(fd, buf, sizeof(buf) - 1) > 12 && std::strncmp(buf, "HTTP/1.1 ", 9) == 0) status = std::atoi(buf + 9);
    }
  }
  close(fd);
  return status;
}

std::string Port(bool auto_ports, int64_t base, int64_t offset) {
  return std::to_string(auto_ports ? 0 : base + offset);
}

// argv with the value after `flag` replaced (restarts reuse the ports the first start got).
std::vector<std::string> WithFlag(std::vector<std::string> argv, const std::string& flag, const std::string& value) {
  for (size_t i = 0; i + 1 < argv.size(); ++i) {
    if (argv[i] == flag) argv[i + 1] = value;
  }
  return argv;
}

// The "metrics listening on ADDR" line among a child's early stdout lines, or "".
std::string MetricsAddress(const std::vector<std::string>& lines) {
  for (const auto& l : lines) {
    if (l.rfind("metrics listening on ", 0) == 0) return l.substr(21);
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  using namespace dsv3;
  std::string cluster_file, model, model_name, api_key, host = "127.0.0.1", bin_dir, log_dir, targets_file;
  int64_t port = -1;
  bool auto_ports = false;
  FlagReader flags(argc, argv);
  while (flags.Next()) {
    const std::string& k = flags.flag();
    auto next = [&] { return flags.Value(); };
    if (k == "--cluster") cluster_file = next();
    else if (k == "--model") model = next();
    else if (k == "--model-name") model_name = next();
    else if (k == "--port") port = flags.IntValue();
    else if (k == "--api-key") api_key = next();
    else if (k == "--host") host = next();
    else if (k == "--auto-ports") auto_ports = true;
    else if (k == "--bin-dir") bin_dir = next();
    else if (k == "--log-dir") log_dir = next();
    else if (k == "--targets-file") targets_file = next();
    else if (k == "--help" || k == "-h") { Usage(); return 0; }
    else {
      std::fprintf(stderr, "error: unknown option %s\n", k.c_str());
      Usage();
      return 2;
    }
  }
  if (cluster_file.empty()) {
    Usage();
    return 2;
  }
  auto spec = LoadClusterSpec(cluster_file);
  if (!spec.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(spec.status().message()).c_str());
    return 2;
  }
  ClusterSpec& s = *spec;
  if (!model.empty()) {
    s.model_path = model;
    // Another checkpoint is served under its directory's name unless told otherwise.
    if (model_name.empty()) model_name = std::filesystem::path(model).lexically_normal().filename().string();
    if (model_name.empty()) model_name = std::filesystem::path(model).lexically_normal().parent_path().filename().string();
  }
  if (!model_name.empty()) s.model_name = model_name;
  if (s.model_name.empty()) s.model_name = std::filesystem::path(s.model_path).filename().string();
  if (port >= 0) s.gateway_port = port;
  if (!std::filesystem::exists(s.model_path + "/config.json")) {
    std::fprintf(stderr, "error: %s has no config.json (not a checkpoint directory)\n", s.model_path.c_str());
    return 2;
  }
  if (!std::filesystem::exists(s.model_path + "/tokenizer.json")) {
    std::fprintf(stderr, "error: %s has no tokenizer.json (the gateway needs the model's tokenizer)\n",
                 s.model_path.c_str());
    return 2;
  }
  if (bin_dir.empty()) bin_dir = std::filesystem::canonical("/proc/self/exe").parent_path().parent_path().parent_path().string();
  if (log_dir.empty()) log_dir = std::filesystem::temp_directory_path().string() + "/dsv3-" + s.name + "-logs";
  std::filesystem::create_directories(log_dir);
  bool generated_key = false;
  if (api_key.empty()) {
    if (const char* env = std::getenv("DSV3_API_KEY")) api_key = env;
  }
  if (api_key.empty()) {
    api_key = RandomKey();
    generated_key = true;
  }

  struct sigaction sa {};
  sa.sa_sigaction = OnSignal;
  sa.sa_flags = SA_SIGINFO;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  ProcessGroup group(log_dir);
  const auto kStartup = std::chrono::seconds(600);  // big checkpoints take a while to map
  auto fail = [&](const Status& st) {
    std::fprintf(stderr, "error: %s\n", std::string(st.message()).c_str());
    group.StopAll(std::chrono::seconds(5));
    return 1;
  };
  std::fprintf(stderr, "[dsv3-launch] model %s (%s), logs in %s\n", s.model_name.c_str(), s.model_path.c_str(),
               log_dir.c_str());

  // Every process serves metrics: metricsPort, metricsPort+1, ... in start order.
  int64_t metrics_index = 0;
  std::vector<std::pair<std::string, std::string>> metric_targets;  // (service, host:port)
  auto metrics_flag = [&]() { return host + ":" + Port(auto_ports, s.metrics_port, metrics_index++); };
  auto note_metrics = [&](const std::string& service, const std::vector<std::string>& lines) {
    if (std::string m = MetricsAddress(lines); !m.empty()) metric_targets.push_back({service, m});
  };
  // Restarts keep the addresses the first start got (the others were given them).
  auto restart_where_started = [&](const std::string& name, const std::vector<std::string>& args,
                                   const std::string& addr, const std::vector<std::string>& lines) {
    group.SetRestartArgv(name, WithFlag(WithFlag(args, "--listen", addr), "--metrics-listen", MetricsAddress(lines)));
  };

  // Expert workers: slice i of W, replicas of each slice.
  std::vector<std::string> experts;
  for (int64_t r = 0; r < s.replicas_per_slice; ++r) {
    for (int64_t w = 0; w < s.expert_workers; ++w) {
      const auto [lo, hi] = ExpertSlice(w, s.expert_workers, s.num_experts);
      const std::string name = StrCat("expert-", w, r ? StrCat("-r", r) : "");
      std::vector<std::string> lines;
      const std::vector<std::string> args = {
          bin_dir + "/services/expert-worker/dsv3-expert-worker", "--model", s.model_path, "--experts",
          StrCat(lo, "-", hi), "--listen", host + ":" + Port(auto_ports, s.expert_port, r * s.expert_workers + w),
          "--transport", s.expert_transport == "ucx" ? "ucx" : "grpc", "--threads", std::to_string(s.expert_threads),
          "--worker-id", name, "--metrics-listen", metrics_flag(), "--drain-seconds", std::to_string(s.drain_seconds)};
      auto addr = group.Start(name, args, "listening on ", kStartup, {}, &lines);
      if (!addr.ok()) return fail(addr.status());
      note_metrics("expert-worker", lines);
      restart_where_started(name, args, *addr, lines);
      std::fprintf(stderr, "[dsv3-launch] %s: experts %lld-%lld on %s\n", name.c_str(), static_cast<long long>(lo),
                   static_cast<long long>(hi), addr->c_str());
      experts.push_back(*addr);
    }
  }
  std::string expert_list;
  for (const auto& e : experts) expert_list += (expert_list.empty() ? "" : ",") + e;

  auto start_pool = [&](const std::string& role, const AttentionPoolSpec& p,
                        std::vector<std::string>* out) -> Status {
    for (int64_t i = 0; i < p.replicas; ++i) {
      const std::string name = StrCat(role, "-", i);
      std::vector<std::string> args = {bin_dir + "/services/attention-worker/dsv3-attention-worker",
                                       "--model", s.model_path, "--role", role, "--listen",
                                       host + ":" + Port(auto_ports, p.port, i), "--threads", std::to_string(p.threads),
                                       "--kv-cache-bytes", std::to_string(p.kv_cache_bytes), "--max-batch-tokens",
                                       std::to_string(p.max_batch_tokens), "--max-running", std::to_string(p.max_running),
                                       "--model-name", s.model_name, "--worker-id", name, "--metrics-listen",
                                       metrics_flag(), "--drain-seconds", std::to_string(s.drain_seconds)};
      if (!expert_list.empty()) {
        args.insert(args.end(), {"--expert-workers", expert_list, "--expert-transport",
                                 s.expert_transport == "ucx" ? "ucx" : "grpc", "--expert-failover-ms",
                                 std::to_string(s.expert_failover_ms), "--expert-grace-ms",
                                 std::to_string(s.expert_restart_grace_ms)});
      }
      std::vector<std::string> lines;
      DSV3_ASSIGN_OR_RETURN(std::string addr, group.Start(name, args, "listening on ", kStartup, {}, &lines));
      note_metrics("attention-worker", lines);
      restart_where_started(name, args, addr, lines);
      std::fprintf(stderr, "[dsv3-launch] %s on %s\n", name.c_str(), addr.c_str());
      out->push_back(addr);
    }
    return absl::OkStatus();
  };
  std::vector<std::string> prefill, decode, both;
  if (s.attention_mode == "disaggregated") {
    if (Status st = start_pool("prefill", s.prefill, &prefill); !st.ok()) return fail(st);
    if (Status st = start_pool("decode", s.decode, &decode); !st.ok()) return fail(st);
  } else {
    if (Status st = start_pool("both", s.both, &both); !st.ok()) return fail(st);
  }
  auto join = [](const std::vector<std::string>& v) {
    std::string o;
    for (const auto& x : v) o += (o.empty() ? "" : ",") + x;
    return o;
  };
  std::vector<std::string> gw = {bin_dir + "/services/gateway/dsv3-gateway", "--listen",
                                 host + ":" + std::to_string(s.gateway_port), "--model-name", s.model_name,
                                 "--tokenizer", s.model_path, "--max-body-bytes", std::to_string(s.max_body_bytes),
                                 "--drain-seconds", std::to_string(s.drain_seconds)};
  if (!s.open_paths.empty()) gw.insert(gw.end(), {"--open-paths", join(s.open_paths)});
  if (s.attention_mode == "disaggregated") {
    gw.insert(gw.end(), {"--prefill-workers", join(prefill), "--decode-workers", join(decode)});
  } else {
    gw.insert(gw.end(), {"--workers", join(both)});
  }
  // The key travels in the environment, not on the command line (ps shows arguments).
  auto url = group.Start("gateway", gw, "gateway listening on ", kStartup, {"DSV3_API_KEYS=" + api_key});
  if (!url.ok()) return fail(url.status());
  const int gw_port = std::atoi(url->substr(url->rfind(':') + 1).c_str());
  group.SetRestartArgv("gateway", WithFlag(gw, "--listen", host + ":" + std::to_string(gw_port)));
  metric_targets.push_back({"gateway", host + ":" + std::to_string(gw_port)});
  if (!targets_file.empty()) {
    // Prometheus file_sd format: one group per process.
    std::string j = "[";
    for (size_t i = 0; i < metric_targets.size(); ++i) {
      j += StrCat(i ? "," : "", "\n  {\"targets\": [\"", metric_targets[i].second, "\"], \"labels\": {\"service\": \"",
                  metric_targets[i].first, "\"}}");
    }
    j += "\n]\n";
    // Written aside and renamed: Prometheus may be watching the file.
    const std::string tmp = targets_file + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "w");
    const bool written = f && std::fwrite(j.data(), 1, j.size(), f) == j.size();
    if (f) std::fclose(f);
    if (!written || std::rename(tmp.c_str(), targets_file.c_str()) != 0) {
      return fail(Internal("launch", StrCat("cannot write ", targets_file)));
    }
  }
  bool ready = false;
  for (int i = 0; i < 600 && !g_stop; ++i) {
    if (HttpStatus(host, gw_port, "/ready") == 200) {
      ready = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (!ready) return fail(absl::UnavailableError("the gateway did not report ready within 60 s; see " + log_dir));
  std::printf("dsv3 cluster ready: %s\n", url->c_str());
  std::printf("  model:   %s\n", s.model_name.c_str());
  std::printf("  api key: %s%s\n", api_key.c_str(), generated_key ? "  (generated; pass --api-key to choose)" : "");
  std::printf("  web chat: %s/\n", url->c_str());
  std::printf("  metrics: %s/metrics (gateway)", url->c_str());
  for (const auto& [svc, addr] : metric_targets) {
    if (svc != "gateway") std::printf(", http://%s/metrics", addr.c_str());
  }
  std::printf("\n");
  std::printf("  try:\n    curl %s/v1/chat/completions -H \"Content-Type: application/json\" \\\n"
              "      -H \"Authorization: Bearer %s\" \\\n"
              "      -d '{\"model\": \"%s\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello!\"}], \"max_tokens\": 32}'\n",
              url->c_str(), api_key.c_str(), s.model_name.c_str());
  std::printf("  Ctrl-C stops the cluster.\n");
  std::fflush(stdout);
  // Supervision: never a teardown. A dead process is restarted where it was; the others
  // (and the requests they serve) go on.
  while (!g_stop) {
    group.Supervise([](const std::string& line) {
      std::fprintf(stderr, "[dsv3-launch] %s\n", line.c_str());
      std::fflush(stderr);
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::fprintf(stderr, "[dsv3-launch] stopping (signal %d from pid %d)\n", static_cast<int>(g_stop),
               static_cast<int>(g_sender));
  group.StopAll(std::chrono::seconds(5));
  return 0;
}
