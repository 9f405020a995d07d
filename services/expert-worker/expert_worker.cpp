#include "services/expert-worker/expert_worker.h"

#include <chrono>

#include <cstdio>
#include <functional>

#include <nlohmann/json.hpp>

#include "common/model/expert_executor.h"
#include "common/transport/expert_channel.h"

namespace dsv3 {

StatusOr<std::unique_ptr<ExpertWorker>> ExpertWorker::Create(const ExpertWorkerOptions& opts) {
  std::unique_ptr<ExpertWorker> w(new ExpertWorker());
  w->opts_ = opts;
  DSV3_ASSIGN_OR_RETURN(w->ckpt_, Checkpoint::Open(opts.model_dir));
  const ModelConfig& cfg = w->ckpt_->config();
  if (opts.experts == "all") {
    for (int32_t e = 0; e < cfg.n_routed_experts; ++e) w->experts_.push_back(e);
  } else {
    DSV3_ASSIGN_OR_RETURN(w->experts_, ParseExpertRanges(opts.experts, cfg.n_routed_experts));
  }
  WeightSelection sel;
  sel.attention_and_dense = false;
  sel.expert_mask.assign(cfg.n_routed_experts, false);
  for (int32_t e : w->experts_) sel.expert_mask[e] = true;
  DSV3_ASSIGN_OR_RETURN(w->weights_, LoadModelWeights(*w->ckpt_, sel, StderrLoadProgress()));
  std::string err;
  w->backend_ = kernels::MakeCpuBackend({opts.isa, opts.threads}, &err);
  if (!w->backend_) return InvalidArgument("expert-worker", err);
  w->limits_.hidden_size = cfg.hidden_size;
  w->limits_.n_routed_experts = cfg.n_routed_experts;
  w->limits_.num_layers = cfg.num_hidden_layers;
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) w->limits_.moe_layer.push_back(cfg.IsMoeLayer(l));
  w->fingerprint_ = cfg.Fingerprint();
  return w;
}

expert_pb::DescribeResponse ExpertWorker::Describe() const {
  expert_pb::DescribeResponse r;
  const ModelConfig& cfg = config();
  r.set_worker_id(opts_.worker_id);
  r.set_model_type(cfg.model_type);
  r.set_hidden_size(static_cast<int32_t>(cfg.hidden_size));
  r.set_n_routed_experts(static_cast<int32_t>(cfg.n_routed_experts));
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    if (cfg.IsMoeLayer(l)) r.add_moe_layers(static_cast<int32_t>(l));
  }
  for (int32_t e : experts_) r.add_experts(e);
  r.set_config_fingerprint(fingerprint_);
  return r;
}

expert_pb::ExpertResult ExpertWorker::Handle(const expert_pb::ExpertBatch& b) {
  const auto t0 = std::chrono::steady_clock::now();
  in_flight_++;
  expert_pb::ExpertResult r = HandleUntimed(b);
  in_flight_--;
  if (opts_.on_batch) {
    opts_.on_batch(r.num_tokens(), std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                   r.error_code() == 0);
  }
  return r;
}

expert_pb::ExpertResult ExpertWorker::HandleUntimed(const expert_pb::ExpertBatch& b) {
  expert_pb::ExpertResult r;
  r.set_seq(b.seq());
  r.set_layer(b.layer());
  r.set_dtype(b.dtype());
  auto fail = [&](const Status& st) {
    r.set_error_code(static_cast<int32_t>(st.code()));
    r.set_error_message(StrCat(opts_.worker_id.empty() ? "expert worker" : opts_.worker_id, ": ", st.message()));
    r.clear_partial_sums();
    return r;
  };
  // Draining: the attention side sends this batch to a replica (or holds it for the restart).
  if (draining_) return fail(absl::UnavailableError("draining (shutting down)"));
  auto decoded = DecodeExpertBatch(b, limits_);
  if (!decoded.ok()) return fail(decoded.status());
  const int64_t T = decoded->tokens, H = config().hidden_size;
  std::vector<float> out(static_cast<size_t>(T * H), 0.0f);
  if (!opts_.skip_compute) {
    std::lock_guard<std::mutex> lk(mu_);
    Status st = ComputeRoutedExperts(*backend_, *weights_.layers[decoded->layer].moe, H, decoded->x.data(), T,
                                     decoded->slots, decoded->ids.data(), decoded->weights.data(), out.data());
    if (!st.ok()) return fail(st);
  } else {
    for (int32_t e : decoded->ids) {
      if (e != -1 && !weights_.layers[decoded->layer].moe->hosted[e]) {
        return fail(InvalidArgument("experts", StrCat("expert ", e, " is not hosted here")));
      }
    }
  }
  r.set_num_tokens(static_cast<int32_t>(T));
  EncodeFloats(out.data(), T * H, b.dtype() == expert_pb::WIRE_F32 ? WireDType::kF32 : WireDType::kBF16,
               r.mutable_partial_sums());
  ++handled_;
  return r;
}

void ExpertWorker::HandleSerialized(const std::string& in, uint64_t fallback_seq, std::string* out) {
  expert_pb::ExpertBatch b;
  expert_pb::ExpertResult r;
  if (!b.ParseFromString(in)) {
    r.set_seq(fallback_seq);
    r.set_error_code(static_cast<int32_t>(absl::StatusCode::kInvalidArgument));
    r.set_error_message(StrCat(opts_.worker_id, ": unparsable ExpertBatch (", in.size(), " bytes)"));
  } else {
    r = Handle(b);
  }
  out->clear();
  r.SerializeToString(out);
}

}  // namespace dsv3
