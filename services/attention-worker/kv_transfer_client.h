// KvTransferClient: the prefill side of prefill/decode disaggregation. Pushes a finished
// prompt's latent KV to the decode worker the caller named, over gRPC (PushKv client
// stream, in bounded chunks), and returns the handle the decode worker parked it under.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <grpcpp/grpcpp.h>

#include "proto/dsv3/attention.grpc.pb.h"
#include "services/attention-worker/engine/generate_request.h"

namespace dsv3 {

struct KvTransferResult {
  std::string handle;
  int64_t bytes = 0;
  double seconds = 0;
};

class KvTransferClient {
 public:
  explicit KvTransferClient(std::string fingerprint, int64_t timeout_ms = 30000)
      : fingerprint_(std::move(fingerprint)), timeout_ms_(timeout_ms) {}
  StatusOr<KvTransferResult> Push(const std::string& decode_worker, const KvExport& ex);
  // The decode worker's packed UCX address ("" when it offers none), cached per worker.
  StatusOr<std::string> UcxAddress(const std::string& decode_worker);

 private:
  attention::v1::AttentionService::Stub* StubFor(const std::string& address);

  std::string fingerprint_;
  int64_t timeout_ms_;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<attention::v1::AttentionService::Stub>> stubs_;
  std::map<std::string, std::string> ucx_addresses_;
};

}  // namespace dsv3
