#include "tools/launch/cluster_spec.h"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace dsv3 {

namespace {

using Json = nlohmann::json;

Status Field(const Json& obj, const std::string& path, const char* key, int64_t* out, int64_t min = 0) {
  if (!obj.contains(key)) return absl::OkStatus();  // defaults stand
  const Json& v = obj[key];
  if (!v.is_number_integer()) return InvalidArgument("cluster", StrCat(path, ".", key, " must be an integer"));
  if (v.get<int64_t>() < min) return InvalidArgument("cluster", StrCat(path, ".", key, " must be >= ", min));
  *out = v.get<int64_t>();
  return absl::OkStatus();
}

Status Field(const Json& obj, const std::string& path, const char* key, std::string* out) {
  if (!obj.contains(key)) return absl::OkStatus();
  if (!obj[key].is_string()) return InvalidArgument("cluster", StrCat(path, ".", key, " must be a string"));
  *out = obj[key].get<std::string>();
  return absl::OkStatus();
}

Status Object(const Json& obj, const std::string& path, const char* key, const Json** out) {
  static const Json kEmpty = Json::object();
  *out = &kEmpty;
  if (!obj.contains(key)) return absl::OkStatus();
  if (!obj[key].is_object()) return InvalidArgument("cluster", StrCat(path, ".", key, " must be an object"));
  *out = &obj[key];
  return absl::OkStatus();
}

Status Pool(const Json& att, const char* key, AttentionPoolSpec* p) {
  const Json* o;
  DSV3_RETURN_IF_ERROR(Object(att, "attention", key, &o));
  const std::string path = StrCat("attention.", key);
  DSV3_RETURN_IF_ERROR(Field(*o, path, "replicas", &p->replicas, 0));
  DSV3_RETURN_IF_ERROR(Field(*o, path, "port", &p->port, 0));
  DSV3_RETURN_IF_ERROR(Field(*o, path, "threads", &p->threads, 1));
  DSV3_RETURN_IF_ERROR(Field(*o, path, "kvCacheBytes", &p->kv_cache_bytes, 1));
  DSV3_RETURN_IF_ERROR(Field(*o, path, "maxBatchTokens", &p->max_batch_tokens, 1));
  DSV3_RETURN_IF_ERROR(Field(*o, path, "maxRunning", &p->max_running, 1));
  return absl::OkStatus();
}

}  // namespace

std::pair<int64_t, int64_t> ExpertSlice(int64_t worker, int64_t workers, int64_t num_experts) {
  return {worker * num_experts / workers, (worker + 1) * num_experts / workers - 1};
}

StatusOr<ClusterSpec> ParseClusterSpec(const std::string& text) {
  Json j = Json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return InvalidArgument("cluster", "the description is not a JSON object");
  if (j.contains("cluster") && j["cluster"].is_object()) j = j["cluster"];  // a Helm values file
  ClusterSpec s;
  DSV3_RETURN_IF_ERROR(Field(j, "", "name", &s.name));
  const Json *model, *gw, *att, *ex;
  DSV3_RETURN_IF_ERROR(Object(j, "", "model", &model));
  DSV3_RETURN_IF_ERROR(Field(*model, "model", "name", &s.model_name));
  DSV3_RETURN_IF_ERROR(Field(*model, "model", "path", &s.model_path));
  DSV3_RETURN_IF_ERROR(Object(j, "", "gateway", &gw));
  DSV3_RETURN_IF_ERROR(Field(*gw, "gateway", "port", &s.gateway_port, 0));
  DSV3_RETURN_IF_ERROR(Field(*gw, "gateway", "maxBodyBytes", &s.max_body_bytes, 1));
  if (gw->contains("openPaths")) {
    if (!(*gw)["openPaths"].is_array()) return InvalidArgument("cluster", "gateway.openPaths must be an array");
    for (const auto& p : (*gw)["openPaths"]) {
      if (!p.is_string()) return InvalidArgument("cluster", "gateway.openPaths entries must be strings");
      s.open_paths.push_back(p.get<std::string>());
    }
  }
  DSV3_RETURN_IF_ERROR(Object(j, "", "attention", &att));
  DSV3_RETURN_IF_ERROR(Field(*att, "attention", "mode", &s.attention_mode));
  if (s.attention_mode != "disaggregated" && s.attention_mode != "colocated") {
    return InvalidArgument("cluster", StrCat("attention.mode must be disaggregated or colocated, got '", s.attention_mode, "'"));
  }
  DSV3_RETURN_IF_ERROR(Pool(*att, "prefill", &s.prefill));
  DSV3_RETURN_IF_ERROR(Pool(*att, "decode", &s.decode));
  DSV3_RETURN_IF_ERROR(Pool(*att, "both", &s.both));
  DSV3_RETURN_IF_ERROR(Field(*att, "attention", "kvTransport", &s.kv_transport));
  DSV3_RETURN_IF_ERROR(Object(j, "", "experts", &ex));
  DSV3_RETURN_IF_ERROR(Field(*ex, "experts", "numExperts", &s.num_experts, 1));
  DSV3_RETURN_IF_ERROR(Field(*ex, "experts", "workers", &s.expert_workers, 0));
  DSV3_RETURN_IF_ERROR(Field(*ex, "experts", "replicasPerSlice", &s.replicas_per_slice, 1));
  DSV3_RETURN_IF_ERROR(Field(*ex, "experts", "port", &s.expert_port, 0));
  DSV3_RETURN_IF_ERROR(Field(*ex, "experts", "threads", &s.expert_threads, 1));
  DSV3_RETURN_IF_ERROR(Field(*ex, "experts", "transport", &s.expert_transport));
  DSV3_RETURN_IF_ERROR(Field(*ex, "experts", "failoverMs", &s.expert_failover_ms, 100));
  DSV3_RETURN_IF_ERROR(Field(*ex, "experts", "restartGraceMs", &s.expert_restart_grace_ms, 0));
  DSV3_RETURN_IF_ERROR(Field(j, "", "metricsPort", &s.metrics_port, 0));
  DSV3_RETURN_IF_ERROR(Field(j, "", "drainSeconds", &s.drain_seconds, 0));
  if (s.expert_workers > s.num_experts) {
    return InvalidArgument("cluster", StrCat("experts.workers (", s.expert_workers, ") exceeds experts.numExperts (",
                                             s.num_experts, ")"));
  }
  return s;
}

StatusOr<ClusterSpec> LoadClusterSpec(const std::string& path) {
  std::ifstream f(path);
  if (!f) return NotFound("cluster", StrCat("cannot read ", path));
  std::stringstream ss;
  ss << f.rdbuf();
  auto s = ParseClusterSpec(ss.str());
  if (!s.ok()) return InvalidArgument("cluster", StrCat(path, ": ", s.status().message()));
  return s;
}

}  // namespace dsv3
