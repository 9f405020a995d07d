// UcxWorker: a UCP context + worker with the few operations the expert data plane needs
// (tagged send, probe-and-receive of unknown-size messages, endpoints from packed worker
// addresses). Single-threaded: each instance is driven by one thread. UCX picks the wire
// (shared memory / TCP on CPU, RDMA where present; UCX_TLS overrides).
#pragma once

#include <ucp/api/ucp.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/transport/expert_channel.h"

namespace dsv3 {

class UcxWorker {
 public:
  static StatusOr<std::unique_ptr<UcxWorker>> Create();
  ~UcxWorker();
  UcxWorker(const UcxWorker&) = delete;
  UcxWorker& operator=(const UcxWorker&) = delete;

  const std::string& address() const { return address_; }
  // An endpoint to a peer's packed worker address; `broken` is set if the peer fails.
  StatusOr<ucp_ep_h> Connect(const std::string& remote_address, std::atomic<bool>* broken);
  void Close(ucp_ep_h ep);
  Status Send(ucp_ep_h ep, uint64_t tag, const std::string& bytes, Deadline deadline, const std::atomic<bool>* broken);
  // Receives one message whose tag matches (tag & mask); false if none arrived before
  // the deadline or, when max_sleep_ms < 1000, after sleeping that long once.
  StatusOr<bool> Receive(uint64_t tag, uint64_t mask, std::string* out, uint64_t* sender_tag, Deadline deadline,
                         const std::atomic<bool>* broken, int max_sleep_ms = 1000);
  // One piece of a multi-message transfer: tag and memory (read for sends, written for
  // receives; the memory must outlive the call).
  struct Piece {
    uint64_t tag = 0;
    void* data = nullptr;
    size_t bytes = 0;
  };
  // Posts every send (or exact-tag receive) at once so UCX pipelines them, then waits for
  // all; on a deadline or a failed peer the rest are cancelled before returning.
  Status SendAll(ucp_ep_h ep, const std::vector<Piece>& pieces, Deadline deadline, const std::atomic<bool>* broken);
  Status ReceiveAll(const std::vector<Piece>& pieces, Deadline deadline, const std::atomic<bool>* broken);
  // Blocks until UCX has events or timeout_ms passes.
  bool Sleep(int timeout_ms);
  void Progress() { ucp_worker_progress(worker_); }

 private:
  UcxWorker() = default;
  Status Wait(void* request, Deadline deadline, const std::atomic<bool>* broken, const char* what);
  Status WaitAll(std::vector<void*>& requests, const std::vector<Piece>* receives, Deadline deadline,
                 const std::atomic<bool>* broken, const char* what);
  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  std::string address_;
  int efd_ = -1;
  // When the last message arrived: Receive spins (yielding) only while traffic is recent,
  // so a listener waiting on an idle worker sleeps on the event fd instead of spinning.
  std::chrono::steady_clock::time_point last_message_;
};

}  // namespace dsv3
