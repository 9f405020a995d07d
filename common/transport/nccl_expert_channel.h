// ExpertChannel over NCCL (GPU builds): setup through gRPC (ConnectNccl hands the worker
// a ncclUniqueId; the caller is rank 0 of a 2-rank communicator), then ExpertBatch /
// ExpertResult bytes travel as NCCL send/recv. One batch is in flight per worker (NCCL
// send/recv pair up in order), later ones wait in a queue until the previous result is in.
#pragma once

#include <deque>
#include <memory>
#include <string>

#include "common/transport/expert_channel.h"
#include "common/transport/nccl_link.h"

namespace dsv3 {

class NcclExpertChannel final : public ExpertChannel {
 public:
  explicit NcclExpertChannel(std::string grpc_address) : grpc_address_(std::move(grpc_address)) {}
  std::string name() const override { return "nccl://" + grpc_address_; }
  Status Send(const expert_pb::ExpertBatch& batch, Deadline deadline) override;
  StatusOr<expert_pb::ExpertResult> Receive(Deadline deadline) override;
  void Reset() override;

 private:
  Status EnsureConnected(Deadline deadline);
  std::string grpc_address_;
  std::unique_ptr<NcclLink> link_;
  std::deque<std::string> queued_;
  int in_flight_ = 0;
};

}  // namespace dsv3
