#include "common/transport/nccl_expert_channel.h"

#include <random>

#include "common/transport/grpc_expert_channel.h"

namespace dsv3 {

Status NcclExpertChannel::EnsureConnected(Deadline deadline) {
  if (link_) return absl::OkStatus();
  DSV3_ASSIGN_OR_RETURN(std::string id, NcclLink::NewUniqueId());
  auto stub = ExpertStub(grpc_address_);
  grpc::ClientContext ctx;
  SetGrpcDeadline(&ctx, deadline);
  expert_pb::ConnectNcclRequest req;
  req.set_unique_id(id);
  req.set_client_id(std::random_device{}());
  expert_pb::ConnectNcclResponse resp;
  grpc::Status st = stub->ConnectNccl(&ctx, req, &resp);
  if (!st.ok()) return absl::UnavailableError(StrCat(name(), ": ConnectNccl failed: ", st.error_message()));
  auto link = NcclLink::Join(id, /*rank=*/0, deadline);
  if (!link.ok()) return absl::Status(link.status().code(), StrCat(name(), ": ", link.status().message()));
  link_ = std::move(*link);
  return absl::OkStatus();
}

Status NcclExpertChannel::Send(const expert_pb::ExpertBatch& batch, Deadline deadline) {
  DSV3_RETURN_IF_ERROR(EnsureConnected(deadline));
  std::string bytes;
  batch.SerializeToString(&bytes);
  if (in_flight_ > 0) {
    queued_.push_back(std::move(bytes));
    return absl::OkStatus();
  }
  Status st = link_->Send(bytes, deadline);
  if (!st.ok()) return absl::Status(st.code(), StrCat(name(), ": ", st.message()));
  ++in_flight_;
  return absl::OkStatus();
}

StatusOr<expert_pb::ExpertResult> NcclExpertChannel::Receive(Deadline deadline) {
  if (!link_ || in_flight_ == 0) return absl::FailedPreconditionError(StrCat(name(), ": nothing in flight"));
  std::string bytes;
  Status st = link_->Receive(&bytes, deadline);
  if (!st.ok()) return absl::Status(st.code(), StrCat(name(), ": ", st.message()));
  --in_flight_;
  if (!queued_.empty()) {
    st = link_->Send(queued_.front(), deadline);
    queued_.pop_front();
    if (!st.ok()) return absl::Status(st.code(), StrCat(name(), ": ", st.message()));
    ++in_flight_;
  }
  expert_pb::ExpertResult r;
  if (!r.ParseFromString(bytes)) return absl::DataLossError(StrCat(name(), ": unparsable result"));
  return r;
}

void NcclExpertChannel::Reset() {
  if (link_) link_->Abort();
  link_.reset();
  queued_.clear();
  in_flight_ = 0;
}

}  // namespace dsv3
