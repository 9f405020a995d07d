#include "services/gateway/worker_client.h"

namespace dsv3::gateway {

std::shared_ptr<GenerateStream> GenerateStream::Start(attn::AttentionService::Stub* stub, attn::GenerateRequest request,
                                                      MessageFn on_message, DoneFn on_done) {
  std::shared_ptr<GenerateStream> s(new GenerateStream());
  s->request_ = std::move(request);
  s->on_message_ = std::move(on_message);
  s->on_done_ = std::move(on_done);
  s->self_ = s;
  stub->async()->Generate(&s->context_, &s->request_, s.get());
  s->StartRead(&s->response_);
  s->StartCall();
  return s;
}

void GenerateStream::OnReadDone(bool ok) {
  if (!ok) return;  // end of stream or failure: OnDone follows with the status
  on_message_(response_);
  response_.Clear();
  StartRead(&response_);
}

void GenerateStream::OnDone(const grpc::Status& s) {
  // Drop the self-reference last: the object may die when this function returns.
  std::shared_ptr<GenerateStream> keep = std::move(self_);
  DoneFn done = std::move(on_done_);
  on_message_ = nullptr;
  done(s);
}

WorkerClient::WorkerClient(std::string address, std::string role) : address_(std::move(address)), role_(std::move(role)) {
  grpc::ChannelArguments args;
  // Notice a dead worker quickly and come back soon after it restarts.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 200);
  channel_ = grpc::CreateCustomChannel(address_, grpc::InsecureChannelCredentials(), args);
  stub_ = attn::AttentionService::NewStub(channel_);
}

StatusOr<attn::WorkerInfo> WorkerClient::Describe(std::chrono::milliseconds timeout) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  attn::WorkerInfo info;
  const grpc::Status s = stub_->Describe(&ctx, attn::DescribeRequest(), &info);
  if (!s.ok()) return FromGrpc(s, StrCat("Describe on ", address_));
  return info;
}

StatusOr<attn::LoadReport> WorkerClient::GetLoad(std::chrono::milliseconds timeout) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  attn::LoadReport load;
  const grpc::Status s = stub_->GetLoad(&ctx, attn::LoadRequest(), &load);
  if (!s.ok()) return FromGrpc(s, StrCat("GetLoad on ", address_));
  return load;
}

void WorkerClient::AbortAsync(const std::string& request_id) {
  struct Call {
    grpc::ClientContext ctx;
    attn::AbortRequest req;
    attn::AbortResponse resp;
  };
  auto* call = new Call();
  call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  call->req.set_request_id(request_id);
  stub_->async()->Abort(&call->ctx, &call->req, &call->resp, [call](grpc::Status) { delete call; });
}

Status FromGrpc(const grpc::Status& s, std::string_view what) {
  if (s.ok()) return Status();
  return Status(static_cast<absl::StatusCode>(s.error_code()), StrCat(what, ": ", s.error_message()));
}

}  // namespace dsv3::gateway
