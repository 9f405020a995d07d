#include "common/transport/grpc_expert_channel.h"

namespace dsv3 {

std::shared_ptr<grpc::Channel> MakeGrpcChannel(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(kMaxWireMessageBytes + (1 << 20)));
  args.SetMaxSendMessageSize(static_cast<int>(kMaxWireMessageBytes + (1 << 20)));
  // A restarted worker should be reachable again within about a second.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

void SetGrpcDeadline(grpc::ClientContext* ctx, Deadline deadline) {
  ctx->set_deadline(std::chrono::system_clock::now() + (deadline - std::chrono::steady_clock::now()));
}

std::unique_ptr<expert_pb::ExpertService::Stub> ExpertStub(const std::string& address) {
  return expert_pb::ExpertService::NewStub(MakeGrpcChannel(address));
}

StatusOr<expert_pb::DescribeResponse> DescribeExpertWorker(const std::string& address, Deadline deadline) {
  auto stub = ExpertStub(address);
  grpc::ClientContext ctx;
  SetGrpcDeadline(&ctx, deadline);
  ctx.set_wait_for_ready(true);
  expert_pb::DescribeRequest req;
  expert_pb::DescribeResponse resp;
  grpc::Status st = stub->Describe(&ctx, req, &resp);
  if (!st.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(st.error_code()),
                        StrCat("expert worker ", address, ": Describe failed: ", st.error_message()));
  }
  return resp;
}

GrpcExpertChannel::GrpcExpertChannel(std::string address)
    : address_(std::move(address)), channel_(MakeGrpcChannel(address_)), stub_(expert_pb::ExpertService::NewStub(channel_)) {}

GrpcExpertChannel::~GrpcExpertChannel() { CloseStream(); }

Status GrpcExpertChannel::EnsureStream() {
  if (stream_) return absl::OkStatus();
  ctx_ = std::make_unique<grpc::ClientContext>();
  stream_ = stub_->Exchange(ctx_.get());
  {
    std::lock_guard<std::mutex> lk(mu_);
    broken_ = false;
    results_.clear();
  }
  reader_ = std::thread([this] { ReaderLoop(); });
  return absl::OkStatus();
}

void GrpcExpertChannel::ReaderLoop() {
  expert_pb::ExpertResult r;
  while (stream_->Read(&r)) {
    std::lock_guard<std::mutex> lk(mu_);
    results_.push_back(std::move(r));
    cv_.notify_all();
  }
  grpc::Status st = stream_->Finish();
  std::lock_guard<std::mutex> lk(mu_);
  broken_ = true;
  broken_why_ = st.ok() ? "stream closed by the worker" : st.error_message();
  cv_.notify_all();
}

Status GrpcExpertChannel::Send(const expert_pb::ExpertBatch& batch, Deadline) {
  DSV3_RETURN_IF_ERROR(EnsureStream());
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (broken_) return absl::UnavailableError(StrCat(name(), ": connection lost: ", broken_why_));
  }
  if (!stream_->Write(batch)) {
    return absl::UnavailableError(StrCat(name(), ": write failed (worker unreachable or gone)"));
  }
  return absl::OkStatus();
}

StatusOr<expert_pb::ExpertResult> GrpcExpertChannel::Receive(Deadline deadline) {
  std::unique_lock<std::mutex> lk(mu_);
  if (!cv_.wait_until(lk, deadline, [&] { return !results_.empty() || broken_; })) {
    return absl::DeadlineExceededError(StrCat(name(), ": no result before the deadline"));
  }
  if (results_.empty()) return absl::UnavailableError(StrCat(name(), ": connection lost: ", broken_why_));
  expert_pb::ExpertResult r = std::move(results_.front());
  results_.pop_front();
  return r;
}

void GrpcExpertChannel::CloseStream() {
  if (!stream_) return;
  ctx_->TryCancel();
  if (reader_.joinable()) reader_.join();
  stream_.reset();
  ctx_.reset();
  std::lock_guard<std::mutex> lk(mu_);
  results_.clear();
  broken_ = false;
}

void GrpcExpertChannel::Reset() {
  CloseStream();
  // Reset follows a failure: a fresh channel, since the old one may sit in reconnect
  // backoff (or on a dead connection) and would fail the first stream to a restarted worker.
  channel_ = MakeGrpcChannel(address_);
  stub_ = expert_pb::ExpertService::NewStub(channel_);
}

}  // namespace dsv3
