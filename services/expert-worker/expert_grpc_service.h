// gRPC face of an expert worker: Describe, the Exchange stream, grpc.health.v1.
#pragma once

#include <grpcpp/grpcpp.h>

#include "proto/dsv3/expert.grpc.pb.h"
#include "services/expert-worker/expert_worker.h"

namespace dsv3 {

class ExpertGrpcService final : public expert_pb::ExpertService::Service {
 public:
  explicit ExpertGrpcService(ExpertWorker& worker) : worker_(worker) {}
  grpc::Status Describe(grpc::ServerContext*, const expert_pb::DescribeRequest*, expert_pb::DescribeResponse* out) override;
  // One stream per attention-side connection; results go back in request order.
  grpc::Status Exchange(grpc::ServerContext* ctx,
                        grpc::ServerReaderWriter<expert_pb::ExpertResult, expert_pb::ExpertBatch>* stream) override;
  grpc::Status ConnectUcx(grpc::ServerContext*, const expert_pb::ConnectUcxRequest*, expert_pb::ConnectUcxResponse*) override;
  grpc::Status ConnectNccl(grpc::ServerContext*, const expert_pb::ConnectNcclRequest*, expert_pb::ConnectNcclResponse*) override;

  // Set by the UCX server when UCX is offered.
  std::function<Status(const expert_pb::ConnectUcxRequest&)> on_connect_ucx;
  std::string ucx_address;
  // Set where NCCL is built.
  std::function<Status(const expert_pb::ConnectNcclRequest&)> on_connect_nccl;

 private:
  ExpertWorker& worker_;
};

}  // namespace dsv3
