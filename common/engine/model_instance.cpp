#include "common/engine/model_instance.h"

#include <chrono>

namespace dsv3 {

StatusOr<std::unique_ptr<ModelInstance>> LoadModelInstance(const ModelInstanceOptions& opts) {
  auto m = std::make_unique<ModelInstance>();
  DSV3_ASSIGN_OR_RETURN(m->ckpt, Checkpoint::Open(opts.model_dir));
  const auto t0 = std::chrono::steady_clock::now();
  WeightSelection sel;
  sel.routed_experts = opts.expert_workers.empty();
  sel.copy_to_anonymous = opts.copy_weights;
  DSV3_ASSIGN_OR_RETURN(m->weights, LoadModelWeights(*m->ckpt, sel, opts.progress));
  m->load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string err;
  m->backend = kernels::MakeCpuBackend(opts.backend, &err);
  if (!m->backend) return InvalidArgument("engine", err);
  if (!opts.expert_workers.empty()) {
    DSV3_ASSIGN_OR_RETURN(m->dispatcher, ConnectExpertWorkers(m->config(), opts.expert_workers, opts.cluster));
  }
  m->model = std::make_unique<Transformer>(m->config(), m->weights, *m->backend, m->dispatcher.get());
  return m;
}

}  // namespace dsv3
