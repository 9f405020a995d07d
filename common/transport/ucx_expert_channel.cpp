#include "common/transport/ucx_expert_channel.h"

#include <random>

#include "common/transport/grpc_expert_channel.h"

namespace dsv3 {

UcxExpertChannel::UcxExpertChannel(std::string grpc_address) : grpc_address_(std::move(grpc_address)) {
  std::random_device rd;
  client_id_ = (static_cast<uint64_t>(rd()) & 0x7fffffffu) | 1u;
}

UcxExpertChannel::~UcxExpertChannel() { Reset(); }

Status UcxExpertChannel::EnsureConnected(Deadline deadline) {
  if (ep_ && !broken_.load()) return absl::OkStatus();
  Reset();
  DSV3_ASSIGN_OR_RETURN(auto desc, DescribeExpertWorker(grpc_address_, deadline));
  if (desc.ucx_worker_address().empty()) {
    return absl::FailedPreconditionError(StrCat(name(), ": the worker does not offer UCX (start it with --transport ucx)"));
  }
  if (!ucx_) {
    DSV3_ASSIGN_OR_RETURN(ucx_, UcxWorker::Create());
  }
  // Register our address first: results are sent back to it.
  auto stub = ExpertStub(grpc_address_);
  grpc::ClientContext ctx;
  SetGrpcDeadline(&ctx, deadline);
  expert_pb::ConnectUcxRequest req;
  req.set_client_worker_address(ucx_->address());
  req.set_client_id(client_id_);
  expert_pb::ConnectUcxResponse resp;
  grpc::Status st = stub->ConnectUcx(&ctx, req, &resp);
  if (!st.ok()) return absl::UnavailableError(StrCat(name(), ": ConnectUcx failed: ", st.error_message()));
  broken_ = false;
  DSV3_ASSIGN_OR_RETURN(ep_, ucx_->Connect(desc.ucx_worker_address(), &broken_));
  return absl::OkStatus();
}

Status UcxExpertChannel::Send(const expert_pb::ExpertBatch& batch, Deadline deadline) {
  DSV3_RETURN_IF_ERROR(EnsureConnected(deadline));
  buf_.clear();
  batch.SerializeToString(&buf_);
  Status st = ucx_->Send(ep_, (client_id_ << 32) | (batch.seq() & 0xffffffffu), buf_, deadline, &broken_);
  if (!st.ok()) return absl::Status(st.code(), StrCat(name(), ": ", st.message()));
  return absl::OkStatus();
}

StatusOr<expert_pb::ExpertResult> UcxExpertChannel::Receive(Deadline deadline) {
  if (!ucx_ || !ep_) return absl::FailedPreconditionError(StrCat(name(), ": not connected"));
  std::string msg;
  DSV3_ASSIGN_OR_RETURN(bool got, ucx_->Receive(client_id_ << 32, 0xffffffff00000000ull, &msg, nullptr, deadline, &broken_));
  if (!got) return absl::DeadlineExceededError(StrCat(name(), ": no result before the deadline"));
  expert_pb::ExpertResult r;
  if (!r.ParseFromString(msg)) return absl::DataLossError(StrCat(name(), ": unparsable result"));
  return r;
}

void UcxExpertChannel::Reset() {
  if (ucx_ && ep_) ucx_->Close(ep_);
  ep_ = nullptr;
  // A fresh UCX worker drops any late messages of the failed exchange.
  ucx_.reset();
}

}  // namespace dsv3
