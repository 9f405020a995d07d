// ModelInstance: everything one process needs to run the model math on a checkpoint,
// assembled in one place (checkpoint, weights for this process's role, CPU backend,
// optional remote experts, the Transformer). Used by dsv3-generate, the benchmarks and
// the end-to-end tests, and later by the attention worker.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/checkpoint/checkpoint.h"
#include "common/model/transformer.h"
#include "common/transport/expert_cluster.h"
#include "kernels/backend.h"

namespace dsv3 {

struct ModelInstanceOptions {
  std::string model_dir;
  kernels::CpuBackendOptions backend;
  // Non-empty: routed experts live in these expert workers ("host:port") and are not mapped here.
  std::vector<std::string> expert_workers;
  ExpertClusterOptions cluster;
  bool copy_weights = false;  // see Checkpoint::Load
  LoadProgressFn progress;
};

struct ModelInstance {
  std::unique_ptr<Checkpoint> ckpt;
  ModelWeights weights;
  std::unique_ptr<kernels::Backend> backend;
  std::unique_ptr<ExpertDispatcher> dispatcher;  // null: experts in-process
  std::unique_ptr<Transformer> model;
  double load_seconds = 0;

  const ModelConfig& config() const { return ckpt->config(); }
};

StatusOr<std::unique_ptr<ModelInstance>> LoadModelInstance(const ModelInstanceOptions& opts);

}  // namespace dsv3
