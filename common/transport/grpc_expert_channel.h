// ExpertChannel over a gRPC bidirectional stream (the portable data plane). A reader
// thread moves results into a queue so Receive() can wait with a deadline; the channel
// allows messages up to kMaxWireMessageBytes (the dispatcher splits bigger work).
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "common/transport/expert_channel.h"
#include "proto/dsv3/expert.grpc.pb.h"

namespace dsv3 {

// Channel arguments shared by every dsv3 gRPC client: message limits, fast reconnects.
std::shared_ptr<grpc::Channel> MakeGrpcChannel(const std::string& address);
// gRPC deadlines are wall-clock time points; ours are steady-clock ones.
void SetGrpcDeadline(grpc::ClientContext* ctx, Deadline deadline);
// A unary-call stub for one worker (Describe, ConnectUcx, ConnectNccl).
std::unique_ptr<expert_pb::ExpertService::Stub> ExpertStub(const std::string& address);
// Describe() with a deadline, as a status.
StatusOr<expert_pb::DescribeResponse> DescribeExpertWorker(const std::string& address, Deadline deadline);

class GrpcExpertChannel final : public ExpertChannel {
 public:
  explicit GrpcExpertChannel(std::string address);
  ~GrpcExpertChannel() override;
  std::string name() const override { return "grpc://" + address_; }
  Status Send(const expert_pb::ExpertBatch& batch, Deadline deadline) override;
  StatusOr<expert_pb::ExpertResult> Receive(Deadline deadline) override;
  void Reset() override;

 private:
  Status EnsureStream();
  void CloseStream();  // cancels and joins the stream; the channel stays
  void ReaderLoop();

  std::string address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<expert_pb::ExpertService::Stub> stub_;
  std::unique_ptr<grpc::ClientContext> ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<expert_pb::ExpertBatch, expert_pb::ExpertResult>> stream_;
  std::thread reader_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<expert_pb::ExpertResult> results_;
  bool broken_ = false;
  std::string broken_why_;
};

}  // namespace dsv3
