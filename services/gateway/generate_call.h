// GenerateCall: one gateway request's conversation with the workers for one prompt.
//
//   colocated:      Pick(both) -> Generate(request) -> responses ...
//   disaggregated:  Pick(prefill) + Pick(decode) -> Generate(prefill_only, decode_worker=D)
//                   -> first token(s) + kv_handle -> Generate(resume_kv_handle) on D -> ...
//
// A call that fails before any token reached the observer (worker unreachable, overloaded)
// is retried on another worker, at most kMaxAttempts times. After the first token, a
// worker that dies or drains (UNAVAILABLE) is survived by migration (n = 1): the request
// starts again on another worker with the prompt plus the tokens already streamed as its
// context (generated_prefix tells the worker which are output), so the observer's stream
// goes on with no token repeated or missing. The worker continues the same sampler
// position (counter-based RNG; the gateway seeds every request, so unseeded ones continue
// their stream too). At most kMaxMigrations times. Cancel() stops the current stream (gRPC
// cancellation reaches the worker as a cancelled server context) and sends an Abort for
// the request id as well.
//
// Observer callbacks run on gRPC threads, one at a time per call; OnComplete exactly once.
#pragma once

#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "services/gateway/router.h"

namespace dsv3::gateway {

class GenerateObserver {
 public:
  virtual ~GenerateObserver() = default;
  // Token deltas from either phase. FINISH_PREFILL_DONE is not an end: decode continues.
  virtual void OnResponse(const attn::GenerateResponse& response) = 0;
  // `status` is OK when the stream ended normally, CANCELLED after Cancel().
  virtual void OnComplete(const Status& status) = 0;
};

class GenerateCall : public std::enable_shared_from_this<GenerateCall> {
 public:
  static constexpr int kMaxAttempts = 3;
  static constexpr int kMaxMigrations = 3;

  GenerateCall(Router& router, attn::GenerateRequest request, std::vector<int32_t> prompt,
               std::shared_ptr<GenerateObserver> observer, GatewayMetrics* metrics);
  void Start();
  void Cancel();

 private:
  enum class Phase { kSingle, kPrefill, kDecode };
  void Attempt();
  void StartStream(Phase phase, uint64_t seq, WorkerLease* lease, attn::GenerateRequest req);
  void OnMessage(Phase phase, const attn::GenerateResponse& r);
  void OnStreamDone(Phase phase, const grpc::Status& s);
  void Finish(const Status& s);
  // After a mid-generation failure: request_ becomes the continuation; false when the call
  // cannot migrate (n > 1, nothing left to generate, migrations used up). Needs mu_.
  bool PrepareMigration();

  Router& router_;
  GatewayMetrics* metrics_;
  attn::GenerateRequest original_;  // as the client asked (with the gateway's seed)
  attn::GenerateRequest request_;   // what the next attempt sends (a continuation after a migration)
  std::vector<int32_t> prompt_;
  std::shared_ptr<GenerateObserver> observer_;

  std::mutex mu_;  // guards the fields below; never held while calling out
  bool cancelled_ = false;
  bool finished_ = false;
  bool started_ = false;  // a token reached the observer
  int attempts_ = 0;
  std::set<std::string> tried_;
  std::unique_ptr<WorkerLease> lease_;         // the worker of the current stream
  std::unique_ptr<WorkerLease> decode_lease_;  // disaggregated: the chosen decode worker
  std::shared_ptr<GenerateStream> stream_;
  uint64_t stream_seq_ = 0;  // which StartStream stream_ belongs to
  std::string kv_handle_;
  std::vector<bool> choice_open_;  // disaggregated: choices still to decode
  std::vector<int64_t> generated_;  // choice 0's tokens so far (n = 1: what a migration carries)
  bool choice_ended_ = false;       // choice 0 got its finish reason
  int migrations_ = 0;
  Status last_failure_;  // why the previous attempt failed: the answer when no worker is left
};

}  // namespace dsv3::gateway
