// ExpertChannel over UCX tagged messages. Setup goes through gRPC: Describe returns the
// worker's UCX address, ConnectUcx registers ours so results come back over UCX. Tags
// carry (client id << 32 | seq) so several attention processes share one worker.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "common/transport/expert_channel.h"
#include "common/transport/ucx_worker.h"

namespace dsv3 {

class UcxExpertChannel final : public ExpertChannel {
 public:
  explicit UcxExpertChannel(std::string grpc_address);
  ~UcxExpertChannel() override;
  std::string name() const override { return "ucx://" + grpc_address_; }
  Status Send(const expert_pb::ExpertBatch& batch, Deadline deadline) override;
  StatusOr<expert_pb::ExpertResult> Receive(Deadline deadline) override;
  void Reset() override;

 private:
  Status EnsureConnected(Deadline deadline);

  std::string grpc_address_;
  uint64_t client_id_;
  std::unique_ptr<UcxWorker> ucx_;
  ucp_ep_h ep_ = nullptr;
  std::atomic<bool> broken_{false};
  std::string buf_;
};

}  // namespace dsv3
