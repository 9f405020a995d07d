// ClusterSpec: the cluster description (deploy/cluster/cluster.schema.json), the same
// schema the Helm chart reads under `.Values.cluster`, parsed for the local launcher.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace dsv3 {

struct AttentionPoolSpec {
  int64_t replicas = 1, port = 0, threads = 1, kv_cache_bytes = 256ll << 20, max_batch_tokens = 512, max_running = 64;
};

struct ClusterSpec {
  std::string name = "dsv3";
  std::string model_name, model_path;
  int64_t gateway_port = 8000;
  std::vector<std::string> open_paths;
  int64_t max_body_bytes = 8 << 20;
  std::string attention_mode = "disaggregated";  // or colocated
  AttentionPoolSpec prefill, decode, both;
  std::string kv_transport = "grpc";
  int64_t num_experts = 256, expert_workers = 2, replicas_per_slice = 1, expert_port = 50300, expert_threads = 1;
  std::string expert_transport = "grpc";
  int64_t expert_failover_ms = 3000, expert_restart_grace_ms = 20000;
  int64_t metrics_port = 9400;
  int64_t drain_seconds = 30;
};

// Errors name the JSON path of the offending field.
StatusOr<ClusterSpec> ParseClusterSpec(const std::string& json_text);
StatusOr<ClusterSpec> LoadClusterSpec(const std::string& path);

// Worker i of W hosts experts [floor(i*E/W), floor((i+1)*E/W) - 1] (the chart's rule).
std::pair<int64_t, int64_t> ExpertSlice(int64_t worker, int64_t workers, int64_t num_experts);

}  // namespace dsv3
