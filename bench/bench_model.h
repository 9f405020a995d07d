// The checkpoint a whole-model benchmark runs on, from the environment (bench/run.sh sets
// it): DSV3_BENCH_MODEL=checkpoint dir; DSV3_BENCH_EXPERT_WORKERS=host:port,... puts the
// routed experts in those processes (DSV3_BENCH_EXPERT_TRANSPORT grpc|ucx).
#pragma once

#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/str_split.h"
#include "common/engine/model_instance.h"

namespace dsv3 {

struct BenchModel {
  std::unique_ptr<ModelInstance> m;
  std::string error;  // why m is null
};

inline BenchModel LoadBenchModel() {
  BenchModel r;
  const char* dir = std::getenv("DSV3_BENCH_MODEL");
  if (!dir) {
    r.error = "set DSV3_BENCH_MODEL to a checkpoint directory (bench/run.sh does)";
    return r;
  }
  ModelInstanceOptions o;
  o.model_dir = dir;
  if (const char* remote = std::getenv("DSV3_BENCH_EXPERT_WORKERS")) {
    for (absl::string_view piece : absl::StrSplit(remote, ',', absl::SkipEmpty())) o.expert_workers.emplace_back(piece);
  }
  if (const char* t = std::getenv("DSV3_BENCH_EXPERT_TRANSPORT")) {
    auto tr = ParseExpertTransport(t);
    if (!tr.ok()) {
      r.error = std::string(tr.status().message());
      return r;
    }
    o.cluster.transport = *tr;
  }
  auto m = LoadModelInstance(o);
  if (!m.ok()) {
    r.error = std::string(m.status().message());
    return r;
  }
  r.m = std::move(*m);
  return r;
}

}  // namespace dsv3
