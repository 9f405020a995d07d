// A fake attention worker for gateway tests: a real gRPC server on 127.0.0.1 implementing
// dsv3.attention.v1.AttentionService with deterministic toy generation.
//
// Tokens: a scripted list when set (then FINISH_STOP at its end), else
// t_i = (last_prompt_token + 1 + i) % vocab. Honors max_tokens, n, stop_token_ids, logprobs
// (fake values), a per-token delay, scripted failures (after k tokens), prefill_only /
// resume_kv_handle (through a KvStore shared by the fakes of one test), and records every
// request, Abort and server-side cancellation for the tests to assert on.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "proto/dsv3/attention.grpc.pb.h"

namespace dsv3::testing {

namespace attn = ::dsv3::attention::v1;

// Where a fake prefill worker "pushes" KV for a fake decode worker.
struct FakeKvStore {
  struct Entry {
    attn::GenerateRequest request;
    std::vector<int64_t> first_tokens;  // per choice
    std::string decode_worker;
  };
  std::mutex mu;
  std::map<std::string, Entry> entries;
};

struct FakeScript {
  std::vector<int64_t> tokens;  // empty: arithmetic tokens
  int token_delay_ms = 0;
  int fail_after_tokens = -1;   // >= 0: fail once this many tokens per choice were sent
  bool fail_fresh_only = false; // the failure spares migrated requests (generated_prefix > 0)
  grpc::StatusCode fail_code = grpc::StatusCode::UNAVAILABLE;
  int cached_prompt_tokens = 0;
};

class FakeAttentionWorker final : public attn::AttentionService::Service {
 public:
  struct Options {
    std::string role = "both";
    int64_t max_context = 4096;
    int64_t vocab_size = 129280;
    int32_t block_size = 16;
    std::string fingerprint = "fp-fake";
    std::string worker_id = "fake";
  };
  static std::unique_ptr<FakeAttentionWorker> Start(Options options, std::shared_ptr<FakeKvStore> kv = nullptr);
  ~FakeAttentionWorker() override;
  void Stop();

  const std::string& address() const { return address_; }
  void SetScript(FakeScript s);
  void SetCachedPrefixHashes(std::vector<uint64_t> h);

  std::vector<attn::GenerateRequest> requests();
  int generate_calls() const { return generate_calls_.load(); }
  int cancellations() const { return cancellations_.load(); }
  int active() const { return active_.load(); }
  int load_polls() const { return load_polls_.load(); }
  std::vector<std::string> aborts();

  grpc::Status Generate(grpc::ServerContext* ctx, const attn::GenerateRequest* req,
                        grpc::ServerWriter<attn::GenerateResponse>* writer) override;
  grpc::Status Abort(grpc::ServerContext* ctx, const attn::AbortRequest* req, attn::AbortResponse* resp) override;
  grpc::Status GetLoad(grpc::ServerContext* ctx, const attn::LoadRequest* req, attn::LoadReport* resp) override;
  grpc::Status Describe(grpc::ServerContext* ctx, const attn::DescribeRequest* req, attn::WorkerInfo* resp) override;

 private:
  FakeAttentionWorker() = default;
  Options options_;
  std::shared_ptr<FakeKvStore> kv_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  std::mutex mu_;
  FakeScript script_;
  std::vector<uint64_t> cached_hashes_;
  std::vector<attn::GenerateRequest> requests_;
  std::vector<std::string> aborts_;
  std::atomic<int> generate_calls_{0}, cancellations_{0}, active_{0}, load_polls_{0};
};

}  // namespace dsv3::testing
