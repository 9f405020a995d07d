// One attention worker as the gateway sees it: a gRPC channel and stub, bounded unary calls
// (Describe, GetLoad, Abort) and Generate streams on gRPC's callback API, so no thread is
// parked per stream: hundreds of concurrent generations cost only memory.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "common/status.h"
#include "proto/dsv3/attention.grpc.pb.h"

namespace dsv3::gateway {

namespace attn = ::dsv3::attention::v1;

// A running Generate stream. Callbacks run on gRPC threads, one at a time per stream:
// on_message for every response, then on_done exactly once. Cancel() is safe from any
// thread at any time (before, during or after completion); gRPC may run on_done inline
// inside it, so never call it while holding a lock that the callbacks take.
class GenerateStream : public grpc::ClientReadReactor<attn::GenerateResponse> {
 public:
  using MessageFn = std::function<void(const attn::GenerateResponse&)>;
  using DoneFn = std::function<void(const grpc::Status&)>;

  static std::shared_ptr<GenerateStream> Start(attn::AttentionService::Stub* stub, attn::GenerateRequest request,
                                               MessageFn on_message, DoneFn on_done);
  void Cancel() { context_.TryCancel(); }

  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& s) override;

 private:
  GenerateStream() = default;
  grpc::ClientContext context_;
  attn::GenerateRequest request_;
  attn::GenerateResponse response_;
  MessageFn on_message_;
  DoneFn on_done_;
  std::shared_ptr<GenerateStream> self_;  // keeps the reactor alive until OnDone
};

class WorkerClient {
 public:
  WorkerClient(std::string address, std::string role);

  const std::string& address() const { return address_; }
  const std::string& role() const { return role_; }  // configured: "both", "prefill" or "decode"
  attn::AttentionService::Stub* stub() { return stub_.get(); }

  StatusOr<attn::WorkerInfo> Describe(std::chrono::milliseconds timeout);
  StatusOr<attn::LoadReport> GetLoad(std::chrono::milliseconds timeout);
  // Fire and forget (the worker frees the sequence even if the stream cancel got lost).
  void AbortAsync(const std::string& request_id);

  std::shared_ptr<GenerateStream> Generate(attn::GenerateRequest request, GenerateStream::MessageFn on_message,
                                           GenerateStream::DoneFn on_done) {
    return GenerateStream::Start(stub_.get(), std::move(request), std::move(on_message), std::move(on_done));
  }

 private:
  std::string address_;
  std::string role_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<attn::AttentionService::Stub> stub_;
};

// gRPC status -> dsv3 Status (same code numbering).
Status FromGrpc(const grpc::Status& s, std::string_view what);

}  // namespace dsv3::gateway
