#include "services/attention-worker/kv_ucx_transfer.h"

#include <chrono>
#include <cstdio>
#include <cstring>

#include "proto/dsv3/attention.pb.h"
#include "services/attention-worker/generate_proto.h"

namespace dsv3 {

namespace {
// Tags: the top byte says what the message is, the rest is the transfer id.
constexpr uint64_t kPushTag = 0xD5ull << 56;
constexpr uint64_t kReplyTag = 0xD6ull << 56;
constexpr uint64_t kKindMask = 0xFFull << 56;
constexpr uint64_t kIdMask = ~kKindMask;
}  // namespace

StatusOr<std::unique_ptr<KvUcxServer>> KvUcxServer::Start(Engine& engine, std::string fingerprint) {
  std::unique_ptr<KvUcxServer> s(new KvUcxServer(engine, std::move(fingerprint)));
  DSV3_ASSIGN_OR_RETURN(s->ucx_, UcxWorker::Create());
  s->address_ = s->ucx_->address();
  s->thread_ = std::thread([p = s.get()] { p->Loop(); });
  return s;
}

KvUcxServer::~KvUcxServer() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  for (auto& [addr, p] : peers_) ucx_->Close(p.ep);
}

void KvUcxServer::Loop() {
  std::string msg;
  while (!stop_.load()) {
    uint64_t tag = 0;
    auto got = ucx_->Receive(kPushTag, kKindMask, &msg, &tag, Deadline::max(), nullptr, /*max_sleep_ms=*/20);
    if (!got.ok() || !*got) continue;  // nothing yet, or a sender died mid-message
    Handle(msg);
  }
}

void KvUcxServer::Handle(const std::string& msg) {
  attention::v1::KvUcxPush push;
  attention::v1::KvTransferResponse reply;
  if (!push.ParseFromString(msg)) return;  // nobody to answer: the address is in the message
  auto answer = [&](const Status& st) {
    if (!st.ok()) {
      reply.set_error_code(static_cast<int32_t>(st.code()));
      reply.set_error_message(std::string(st.message()));
    }
    auto& peer = peers_[push.reply_worker_address()];
    if (peer.ep == nullptr || (peer.broken && peer.broken->load())) {
      if (peer.ep) ucx_->Close(peer.ep);
      peer.broken = std::make_unique<std::atomic<bool>>(false);
      auto ep = ucx_->Connect(push.reply_worker_address(), peer.broken.get());
      if (!ep.ok()) {
        peers_.erase(push.reply_worker_address());
        return;
      }
      peer.ep = *ep;
    }
    Status sent = ucx_->Send(peer.ep, kReplyTag | (push.transfer_id() & kIdMask), reply.SerializeAsString(),
                             std::chrono::steady_clock::now() + std::chrono::seconds(10), peer.broken.get());
    if (!sent.ok()) {
      ucx_->Close(peer.ep);
      peers_.erase(push.reply_worker_address());
    }
  };
  if (push.header().config_fingerprint() != fingerprint_) {
    answer(absl::FailedPreconditionError("kv: the prefill worker serves a different model configuration"));
    return;
  }
  auto ex = ExportFromHeader(push.header());
  if (!ex.ok()) {
    answer(ex.status());
    return;
  }
  const int64_t total = (*ex)->layers * (*ex)->num_positions * (*ex)->latent_dim;
  if (static_cast<int64_t>(push.data().size()) != total * 4) {
    answer(InvalidArgument("kv", StrCat("UCX push carries ", push.data().size(), " bytes, header says ", total * 4)));
    return;
  }
  (*ex)->data.resize(static_cast<size_t>(total));
  std::memcpy((*ex)->data.data(), push.data().data(), push.data().size());
  received_bytes_ += push.data().size();
  auto handle = engine_.ImportKv(*ex);
  if (!handle.ok()) {
    answer(handle.status());
    return;
  }
  reply.set_kv_handle(*handle);
  reply.set_bytes_received(total * 4);
  answer(absl::OkStatus());
}

KvUcxClient::~KvUcxClient() {
  for (auto& [addr, p] : peers_) ucx_->Close(p.ep);
}

StatusOr<KvTransferResult> KvUcxClient::Push(const std::string& decode_worker, const std::string& decode_ucx_address,
                                             const KvExport& ex) {
  const auto t0 = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lk(mu_);
  if (!ucx_) {
    DSV3_ASSIGN_OR_RETURN(ucx_, UcxWorker::Create());
  }
  auto& peer = peers_[decode_ucx_address];
  if (peer.ep == nullptr || peer.broken->load()) {
    if (peer.ep) ucx_->Close(peer.ep);
    peer.broken = std::make_unique<std::atomic<bool>>(false);
    auto ep = ucx_->Connect(decode_ucx_address, peer.broken.get());
    if (!ep.ok()) {
      peers_.erase(decode_ucx_address);
      return absl::UnavailableError(
          StrCat("KV transfer to decode worker ", decode_worker, " failed: UCX connect: ", ep.status().message()));
    }
    peer.ep = *ep;
  }
  const uint64_t id = next_id_++ & kIdMask;
  attention::v1::KvUcxPush push;
  push.set_reply_worker_address(ucx_->address());
  push.set_transfer_id(id);
  *push.mutable_header() = ExportHeader(ex, fingerprint_);
  push.set_data(reinterpret_cast<const char*>(ex.data.data()), ex.data.size() * sizeof(float));
  const Deadline deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms_);
  Status sent = ucx_->Send(peer.ep, kPushTag | id, push.SerializeAsString(), deadline, peer.broken.get());
  if (!sent.ok()) {
    ucx_->Close(peer.ep);
    peers_.erase(decode_ucx_address);
    return absl::UnavailableError(StrCat("KV transfer to decode worker ", decode_worker, " failed: UCX send: ",
                                         sent.message()));
  }
  std::string msg;
  uint64_t tag = 0;
  auto got = ucx_->Receive(kReplyTag | id, ~0ull, &msg, &tag, deadline, peer.broken.get());
  if (!got.ok() || !*got) {
    return absl::UnavailableError(StrCat("KV transfer to decode worker ", decode_worker,
                                         " failed: no UCX reply: ", got.ok() ? "deadline exceeded" : got.status().message()));
  }
  attention::v1::KvTransferResponse reply;
  if (!reply.ParseFromString(msg)) return Internal("kv", "malformed UCX reply");
  if (reply.error_code() != 0) {
    return Status(static_cast<absl::StatusCode>(reply.error_code()),
                  StrCat("KV transfer to decode worker ", decode_worker, " refused: ", reply.error_message()));
  }
  KvTransferResult r;
  r.handle = reply.kv_handle();
  r.bytes = static_cast<int64_t>(ex.data.size() * sizeof(float));
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace dsv3
