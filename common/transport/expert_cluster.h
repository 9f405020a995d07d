// Connecting an attention process to its expert workers: Describe each one, check that it
// serves the same model, and build the dispatcher over the chosen transport.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/transport/expert_dispatcher.h"

namespace dsv3 {

// kNccl exists in every build; ParseExpertTransport refuses it where NCCL was not built.
enum class ExpertTransport { kGrpc, kUcx, kNccl };
StatusOr<ExpertTransport> ParseExpertTransport(const std::string& s);

struct ExpertClusterOptions {
  ExpertTransport transport = ExpertTransport::kGrpc;
  ExpertDispatcherOptions dispatch;
  std::chrono::milliseconds connect_timeout{30000};
};

// `addresses`: "host:port" of each expert worker (gRPC control port).
StatusOr<std::unique_ptr<ExpertDispatcher>> ConnectExpertWorkers(const ModelConfig& cfg,
                                                                 const std::vector<std::string>& addresses,
                                                                 const ExpertClusterOptions& opts);

}  // namespace dsv3
