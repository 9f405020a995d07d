// KV transfer over UCX (prefill -> decode). The decode worker runs a KvUcxServer whose
// worker address it publishes in Describe. A prefill worker's KvUcxClient sends a header
// (the request, sizes, its own address), the server checks it and posts one tagged
// receive per piece of the layer-major data straight into the import buffer, answers
// "ready", and the client posts every piece at once (UCX pipelines them; rendezvous, i.e.
// RMA get, for big pieces on fabrics that have it). As with gRPC, the decode side takes
// cache blocks only once every piece arrived: a sender that dies mid-way leaves nothing.
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

// The wire: the top byte of a tag says what the message is, the next 24 bits which piece
// of the data, the low 32 bits the transfer id (unique per prefill-side worker address).
namespace kv_ucx {
inline constexpr uint64_t kPushTag = 0xD5ull << 56;   // KvUcxPush
inline constexpr uint64_t kReplyTag = 0xD6ull << 56;  // KvTransferResponse with the handle
inline constexpr uint64_t kReadyTag = 0xD7ull << 56;  // KvTransferResponse: send the data
inline constexpr uint64_t kDataTag = 0xD8ull << 56;
inline constexpr uint64_t kKindMask = 0xFFull << 56;
inline constexpr uint64_t kIdMask = 0xFFFFFFFFull;
inline constexpr uint64_t kMaxPieces = 1ull << 24;
inline constexpr uint64_t kMinPieceBytes = 4096;
inline constexpr uint64_t kMaxPieceBytes = 256ull << 20;
inline uint64_t DataTag(uint64_t piece, uint64_t id) { return kDataTag | (piece << 32) | (id & kIdMask); }
}  // namespace kv_ucx

class KvUcxServer {
 public:
  static StatusOr<std::unique_ptr<KvUcxServer>> Start(Engine& engine, std::string fingerprint,
                                                      int64_t timeout_ms = 30000);
  ~KvUcxServer();
  const std::string& address() const { return address_; }
  uint64_t received_bytes() const { return received_bytes_.load(); }

 private:
  KvUcxServer(Engine& engine, std::string fingerprint, int64_t timeout_ms)
      : engine_(engine), fingerprint_(std::move(fingerprint)), timeout_ms_(timeout_ms) {}
  void Loop();
  void Handle(const std::string& msg);

  struct Peer {
    ucp_ep_h ep = nullptr;
    std::unique_ptr<std::atomic<bool>> broken;
  };
  Peer* PeerFor(const std::string& address);  // connected (again if broken), or null

  Engine& engine_;
  std::string fingerprint_;
  int64_t timeout_ms_;
  std::unique_ptr<UcxWorker> ucx_;
  std::string address_;
  std::map<std::string, Peer> peers_;  // by reply address; loop thread only
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> received_bytes_{0};
  std::thread thread_;
};

class KvUcxClient {
 public:
  // piece_bytes: the size of each tagged data message (a multiple of 4, 4 KiB..256 MiB).
  explicit KvUcxClient(std::string fingerprint, int64_t timeout_ms = 30000, uint64_t piece_bytes = kDefaultPieceBytes)
      : fingerprint_(std::move(fingerprint)), timeout_ms_(timeout_ms), piece_bytes_(piece_bytes) {}
  static constexpr uint64_t kDefaultPieceBytes = 1 << 20;
  ~KvUcxClient();
  // decode_ucx_address: the decode worker's packed UCX address (from its Describe).
  StatusOr<KvTransferResult> Push(const std::string& decode_worker, const std::string& decode_ucx_address,
                                  const KvExport& ex);

 private:
  std::string fingerprint_;
  int64_t timeout_ms_;
  uint64_t piece_bytes_;
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
