// KV transfer over UCX (prefill -> decode). The decode worker runs a KvUcxServer whose
// worker address it publishes in Describe; a prefill worker's KvUcxClient sends the whole
// transfer as one tagged message (UCX uses rendezvous, i.e. RMA get, for large messages
// on fabrics that have it) with its own address, and waits for the handle in a reply
// tagged with the transfer id. As with gRPC, the decode side takes cache blocks only
// once the message is complete: a sender that dies mid-way leaves nothing behind.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/transport/ucx_worker.h"
#include "services/attention-worker/engine/engine.h"
#include "services/attention-worker/kv_transfer_client.h"

namespace dsv3 {

class KvUcxServer {
 public:
  static StatusOr<std::unique_ptr<KvUcxServer>> Start(Engine& engine, std::string fingerprint);
  ~KvUcxServer();
  const std::string& address() const { return address_; }
  uint64_t received_bytes() const { return received_bytes_.load(); }

 private:
  KvUcxServer(Engine& engine, std::string fingerprint) : engine_(engine), fingerprint_(std::move(fingerprint)) {}
  void Loop();
  void Handle(const std::string& msg);

  struct Peer {
    ucp_ep_h ep = nullptr;
    std::unique_ptr<std::atomic<bool>> broken;
  };
  Engine& engine_;
  std::string fingerprint_;
  std::unique_ptr<UcxWorker> ucx_;
  std::string address_;
  std::map<std::string, Peer> peers_;  // by reply address; loop thread only
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> received_bytes_{0};
  std::thread thread_;
};

class KvUcxClient {
 public:
  explicit KvUcxClient(std::string fingerprint, int64_t timeout_ms = 30000)
      : fingerprint_(std::move(fingerprint)), timeout_ms_(timeout_ms) {}
  ~KvUcxClient();
  // decode_ucx_address: the decode worker's packed UCX address (from its Describe).
  StatusOr<KvTransferResult> Push(const std::string& decode_worker, const std::string& decode_ucx_address,
                                  const KvExport& ex);

 private:
  std::string fingerprint_;
  int64_t timeout_ms_;
  std::mutex mu_;  // the UCX worker is single-threaded: one transfer at a time
  std::unique_ptr<UcxWorker> ucx_;
  struct Peer {
    ucp_ep_h ep = nullptr;
    std::unique_ptr<std::atomic<bool>> broken;
  };
  std::map<std::string, Peer> peers_;
  uint64_t next_id_ = 1;
};

}  // namespace dsv3
