#include "services/attention-worker/kv_ucx_transfer.h"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

#include "proto/dsv3/attention.pb.h"
#include "services/attention-worker/generate_proto.h"

namespace dsv3 {

using namespace kv_ucx;

namespace {
// The pieces of a layer-major float buffer of `bytes` bytes.
std::vector<UcxWorker::Piece> Pieces(const float* data, uint64_t bytes, uint64_t piece_bytes, uint64_t id) {
  std::vector<UcxWorker::Piece> pieces;
  auto* base = reinterpret_cast<char*>(const_cast<float*>(data));  // sends only read it
  for (uint64_t off = 0, i = 0; off < bytes; off += piece_bytes, ++i) {
    pieces.push_back({DataTag(i, id), base + off, static_cast<size_t>(std::min(piece_bytes, bytes - off))});
  }
  return pieces;
}
}  // namespace

StatusOr<std::unique_ptr<KvUcxServer>> KvUcxServer::Start(Engine& engine, std::string fingerprint,
                                                          int64_t timeout_ms) {
  std::unique_ptr<KvUcxServer> s(new KvUcxServer(engine, std::move(fingerprint), timeout_ms));
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

KvUcxServer::Peer* KvUcxServer::PeerFor(const std::string& address) {
  auto& peer = peers_[address];
  if (peer.ep == nullptr || (peer.broken && peer.broken->load())) {
    if (peer.ep) ucx_->Close(peer.ep);
    peer.broken = std::make_unique<std::atomic<bool>>(false);
    auto ep = ucx_->Connect(address, peer.broken.get());
    if (!ep.ok()) {
      peers_.erase(address);
      return nullptr;
    }
    peer.ep = *ep;
  }
  return &peer;
}

void KvUcxServer::Handle(const std::string& msg) {
  attention::v1::KvUcxPush push;
  if (!push.ParseFromString(msg)) return;  // nobody to answer: the address is in the message
  const std::string reply_address = push.reply_worker_address();
  Peer* peer = PeerFor(reply_address);
  if (peer == nullptr) return;
  const uint64_t id = push.transfer_id() & kIdMask;
  const Deadline deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms_);
  auto answer = [&](uint64_t kind, const Status& st, const std::string& handle, int64_t bytes) {
    attention::v1::KvTransferResponse reply;
    if (!st.ok()) {
      reply.set_error_code(static_cast<int32_t>(st.code()));
      reply.set_error_message(std::string(st.message()));
    }
    reply.set_kv_handle(handle);
    reply.set_bytes_received(bytes);
    Status sent = ucx_->Send(peer->ep, kind | id, reply.SerializeAsString(),
                             std::chrono::steady_clock::now() + std::chrono::seconds(10), peer->broken.get());
    if (!sent.ok()) {
      ucx_->Close(peer->ep);
      peers_.erase(reply_address);
      peer = nullptr;
    }
    return sent.ok();
  };
  if (push.header().config_fingerprint() != fingerprint_) {
    answer(kReadyTag, absl::FailedPreconditionError("kv: the prefill worker serves a different model configuration"),
           "", 0);
    return;
  }
  auto ex = ExportFromHeader(push.header());
  if (!ex.ok()) {
    answer(kReadyTag, ex.status(), "", 0);
    return;
  }
  const uint64_t total = static_cast<uint64_t>((*ex)->layers * (*ex)->num_positions * (*ex)->latent_dim);
  const uint64_t bytes = total * sizeof(float);
  const uint64_t piece = push.piece_bytes();
  if (piece < kMinPieceBytes || piece > kMaxPieceBytes || piece % sizeof(float) != 0 ||
      (bytes + piece - 1) / piece > kMaxPieces) {
    answer(kReadyTag,
           InvalidArgument("kv", StrCat("UCX push piece size ", piece, " bytes for ", bytes,
                                        " bytes is out of range (a multiple of 4 in [4096, 256 MiB], at most 2^24 pieces)")),
           "", 0);
    return;
  }
  // Receives go straight into the import buffer; cache blocks are taken only once every
  // piece is here, so a sender that dies mid-way leaves nothing behind.
  (*ex)->data.resize(static_cast<size_t>(total));
  const auto pieces = Pieces((*ex)->data.data(), bytes, piece, id);
  if (!answer(kReadyTag, absl::OkStatus(), "", 0)) return;
  Status got = ucx_->ReceiveAll(pieces, deadline, peer->broken.get());
  if (!got.ok()) {
    std::fprintf(stderr, "dsv3-attention-worker: UCX KV transfer %llu abandoned: %s\n",
                 static_cast<unsigned long long>(id), std::string(got.message()).c_str());
    if (!peer->broken->load()) answer(kReplyTag, got, "", 0);
    return;
  }
  received_bytes_ += bytes;
  auto handle = engine_.ImportKv(*ex);
  if (!handle.ok()) {
    answer(kReplyTag, handle.status(), "", 0);
    return;
  }
  answer(kReplyTag, absl::OkStatus(), *handle, static_cast<int64_t>(bytes));
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
  auto fail = [&](const std::string& what, const std::string& why) {
    return absl::UnavailableError(StrCat("KV transfer to decode worker ", decode_worker, " failed: UCX ", what, ": ", why));
  };
  auto& peer = peers_[decode_ucx_address];
  if (peer.ep == nullptr || peer.broken->load()) {
    if (peer.ep) ucx_->Close(peer.ep);
    peer.broken = std::make_unique<std::atomic<bool>>(false);
    auto ep = ucx_->Connect(decode_ucx_address, peer.broken.get());
    if (!ep.ok()) {
      peers_.erase(decode_ucx_address);
      return fail("connect", std::string(ep.status().message()));
    }
    peer.ep = *ep;
  }
  auto drop_peer = [&] {
    ucx_->Close(peer.ep);
    peers_.erase(decode_ucx_address);
  };
  const uint64_t id = next_id_++ & kIdMask;
  const Deadline deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms_);
  // A reply (ready or final) from the decode side; errors it reports come back as they are.
  auto reply = [&](uint64_t kind, attention::v1::KvTransferResponse* out) -> Status {
    std::string msg;
    uint64_t tag = 0;
    auto got = ucx_->Receive(kind | id, ~0ull, &msg, &tag, deadline, peer.broken.get());
    if (!got.ok() || !*got) return fail("reply", got.ok() ? std::string("deadline exceeded") : std::string(got.status().message()));
    if (!out->ParseFromString(msg)) return Internal("kv", "malformed UCX reply");
    if (out->error_code() != 0) {
      return Status(static_cast<absl::StatusCode>(out->error_code()),
                    StrCat("KV transfer to decode worker ", decode_worker, " refused: ", out->error_message()));
    }
    return absl::OkStatus();
  };
  const uint64_t bytes = ex.data.size() * sizeof(float);
  if (static_cast<int64_t>(ex.data.size()) != ex.layers * ex.num_positions * ex.latent_dim) {
    return InvalidArgument("kv", StrCat("KV export holds ", ex.data.size(), " floats, its header says ", ex.layers,
                                        " x ", ex.num_positions, " x ", ex.latent_dim));
  }
  attention::v1::KvUcxPush push;
  push.set_reply_worker_address(ucx_->address());
  push.set_transfer_id(id);
  *push.mutable_header() = ExportHeader(ex, fingerprint_);
  push.set_piece_bytes(piece_bytes_);
  Status sent = ucx_->Send(peer.ep, kPushTag | id, push.SerializeAsString(), deadline, peer.broken.get());
  if (!sent.ok()) {
    drop_peer();
    return fail("send", std::string(sent.message()));
  }
  attention::v1::KvTransferResponse ready, done;
  if (Status st = reply(kReadyTag, &ready); !st.ok()) {
    if (absl::IsUnavailable(st)) drop_peer();
    return st;
  }
  sent = ucx_->SendAll(peer.ep, Pieces(ex.data.data(), bytes, piece_bytes_, id), deadline, peer.broken.get());
  if (!sent.ok()) {
    drop_peer();
    return fail("send", std::string(sent.message()));
  }
  if (Status st = reply(kReplyTag, &done); !st.ok()) {
    if (absl::IsUnavailable(st)) drop_peer();
    return st;
  }
  KvTransferResult r;
  r.handle = done.kv_handle();
  r.bytes = static_cast<int64_t>(bytes);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace dsv3
