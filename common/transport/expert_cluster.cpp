#include "common/transport/expert_cluster.h"

#include "common/transport/grpc_expert_channel.h"
#include "common/transport/ucx_expert_channel.h"
#ifdef DSV3_HAVE_NCCL
#include "common/transport/nccl_expert_channel.h"
#endif

namespace dsv3 {

StatusOr<ExpertTransport> ParseExpertTransport(const std::string& s) {
  if (s == "grpc") return ExpertTransport::kGrpc;
  if (s == "ucx") return ExpertTransport::kUcx;
  if (s == "nccl") {
#ifdef DSV3_HAVE_NCCL
    return ExpertTransport::kNccl;
#else
    return Unimplemented("transport", "this build has no NCCL (CUDA toolkit with NCCL not found at build time); use grpc or ucx");
#endif
  }
  return InvalidArgument("transport", StrCat("unknown expert transport '", s, "' (grpc, ucx, nccl)"));
}

StatusOr<std::unique_ptr<ExpertDispatcher>> ConnectExpertWorkers(const ModelConfig& cfg,
                                                                 const std::vector<std::string>& addresses,
                                                                 const ExpertClusterOptions& opts) {
  std::vector<ExpertWorkerEndpoint> eps;
  const Deadline deadline = std::chrono::steady_clock::now() + opts.connect_timeout;
  for (const auto& a : addresses) {
    DSV3_ASSIGN_OR_RETURN(auto d, DescribeExpertWorker(a, deadline));
    if (d.config_fingerprint() != cfg.Fingerprint()) {
      return absl::FailedPreconditionError(StrCat("expert worker ", a, " serves a different model (config fingerprint ",
                                                  d.config_fingerprint(), ", ours ", cfg.Fingerprint(), ")"));
    }
    ExpertWorkerEndpoint ep;
    ep.experts.assign(d.experts().begin(), d.experts().end());
    // Back in service once it answers Describe again with the same model (a draining
    // worker answers UNAVAILABLE).
    ep.probe = [a, fp = cfg.Fingerprint()](Deadline until) -> Status {
      DSV3_ASSIGN_OR_RETURN(auto info, DescribeExpertWorker(a, until));
      if (info.config_fingerprint() != fp) {
        return absl::FailedPreconditionError(StrCat("expert worker ", a, " came back serving a different model"));
      }
      return absl::OkStatus();
    };
    if (opts.transport == ExpertTransport::kUcx) {
      ep.channel = std::make_unique<UcxExpertChannel>(a);
#ifdef DSV3_HAVE_NCCL
    } else if (opts.transport == ExpertTransport::kNccl) {
      ep.channel = std::make_unique<NcclExpertChannel>(a);
#endif
    } else {
      ep.channel = std::make_unique<GrpcExpertChannel>(a);
    }
    eps.push_back(std::move(ep));
  }
  return ExpertDispatcher::Create(cfg, std::move(eps), opts.dispatch);
}

}  // namespace dsv3
