// AttentionService: the attention worker's gRPC face (sync API: one handler thread per
// call, which waits on the request's OutputStream and writes each step's tokens). Client
// cancellation and write failures abort the request in the engine, which frees its blocks
// at once.
#pragma once

#include <atomic>
#include <string>

#include "proto/dsv3/attention.grpc.pb.h"
#include "services/attention-worker/attention_metrics.h"
#include "services/attention-worker/engine/engine.h"
#include "services/attention-worker/kv_transfer_client.h"
#include "services/attention-worker/kv_ucx_transfer.h"

namespace dsv3 {

struct AttentionServiceOptions {
  std::string model_name = "dsv3";
  int64_t max_kv_transfer_bytes = 8ll << 30;
};

struct KvTransferStats {
  std::atomic<uint64_t> sent_bytes{0}, received_bytes{0}, sent_transfers{0}, failed_transfers{0};
  std::atomic<uint64_t> sent_micros{0};
  std::atomic<uint64_t> ucx_transfers{0}, ucx_fallbacks{0};
};

class AttentionService final : public attention::v1::AttentionService::Service {
 public:
  AttentionService(Engine& engine, const AttentionServiceOptions& opts);

  grpc::Status Generate(grpc::ServerContext* ctx, const attention::v1::GenerateRequest* req,
                        grpc::ServerWriter<attention::v1::GenerateResponse>* w) override;
  grpc::Status Abort(grpc::ServerContext* ctx, const attention::v1::AbortRequest* req,
                     attention::v1::AbortResponse* resp) override;
  grpc::Status GetLoad(grpc::ServerContext* ctx, const attention::v1::LoadRequest* req,
                       attention::v1::LoadReport* resp) override;
  grpc::Status Describe(grpc::ServerContext* ctx, const attention::v1::DescribeRequest* req,
                        attention::v1::WorkerInfo* resp) override;
  grpc::Status PushKv(grpc::ServerContext* ctx, grpc::ServerReader<attention::v1::KvTransferChunk>* reader,
                      attention::v1::KvTransferResponse* resp) override;

  const KvTransferStats& kv_stats() const { return kv_stats_; }
  // Decode side: the UCX address this worker's KvUcxServer listens on (Describe shows it).
  void set_ucx_address(std::string a) { ucx_address_ = std::move(a); }
  void set_metrics(AttentionMetrics* m) { metrics_ = m; }
  // Drain (SIGTERM): new requests, KV pushes and load polls answer UNAVAILABLE, so the
  // gateway routes around this worker; requests already here (and resumes of KV already
  // pushed here) run to the end.
  void BeginDrain() { draining_ = true; }
  bool draining() const { return draining_; }
  int active_calls() const { return active_calls_; }

 private:
  // Counts a handler for the drain's "idle" test while it runs.
  class ActiveCall {
   public:
    explicit ActiveCall(std::atomic<int>& n) : n_(n) { ++n_; }
    ~ActiveCall() { --n_; }
    ActiveCall(const ActiveCall&) = delete;
    ActiveCall& operator=(const ActiveCall&) = delete;

   private:
    std::atomic<int>& n_;
  };
  grpc::Status Draining() const;
  Engine& engine_;
  AttentionServiceOptions opts_;
  std::string fingerprint_;
  KvTransferClient kv_client_;
  StatusOr<KvTransferResult> PushKv(const std::string& decode_worker, const std::string& transport,
                                    const KvExport& ex);

  KvTransferStats kv_stats_;
  KvUcxClient ucx_client_;
  std::string ucx_address_;
  AttentionMetrics* metrics_ = nullptr;
  std::atomic<uint64_t> next_id_{1};
  std::atomic<bool> draining_{false};
  std::atomic<int> active_calls_{0};  // Generate and PushKv handlers running
};

grpc::Status ToGrpcStatus(const Status& st);

}  // namespace dsv3
