#include "services/expert-worker/expert_grpc_service.h"

namespace dsv3 {

grpc::Status ExpertGrpcService::Describe(grpc::ServerContext*, const expert_pb::DescribeRequest*,
                                         expert_pb::DescribeResponse* out) {
  // A draining worker must not be probed back into service.
  if (worker_.draining()) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "expert worker is draining (shutting down)");
  *out = worker_.Describe();
  out->set_ucx_worker_address(ucx_address);
  return grpc::Status::OK;
}

grpc::Status ExpertGrpcService::Exchange(grpc::ServerContext* ctx,
                                         grpc::ServerReaderWriter<expert_pb::ExpertResult, expert_pb::ExpertBatch>* stream) {
  expert_pb::ExpertBatch b;
  while (!ctx->IsCancelled() && stream->Read(&b)) {
    if (!stream->Write(worker_.Handle(b))) break;
  }
  return grpc::Status::OK;
}

grpc::Status ExpertGrpcService::ConnectUcx(grpc::ServerContext*, const expert_pb::ConnectUcxRequest* req,
                                           expert_pb::ConnectUcxResponse*) {
  if (!on_connect_ucx) return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "this expert worker does not offer UCX");
  Status st = on_connect_ucx(*req);
  if (!st.ok()) return grpc::Status(static_cast<grpc::StatusCode>(st.code()), std::string(st.message()));
  return grpc::Status::OK;
}

grpc::Status ExpertGrpcService::ConnectNccl(grpc::ServerContext*, const expert_pb::ConnectNcclRequest* req,
                                            expert_pb::ConnectNcclResponse*) {
  if (!on_connect_nccl) {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "this expert worker was built without NCCL");
  }
  Status st = on_connect_nccl(*req);
  if (!st.ok()) return grpc::Status(static_cast<grpc::StatusCode>(st.code()), std::string(st.message()));
  return grpc::Status::OK;
}

}  // namespace dsv3
