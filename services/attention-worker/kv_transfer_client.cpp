#include "services/attention-worker/kv_transfer_client.h"

#include <chrono>
#include <cstring>

#include "common/transport/grpc_expert_channel.h"
#include "services/attention-worker/generate_proto.h"

namespace dsv3 {

namespace {
constexpr int64_t kChunkFloats = 1 << 18;  // 1 MiB per message
}

attention::v1::AttentionService::Stub* KvTransferClient::StubFor(const std::string& address) {
  std::lock_guard<std::mutex> lk(mu_);
  auto& s = stubs_[address];
  if (!s) s = attention::v1::AttentionService::NewStub(MakeGrpcChannel(address));
  return s.get();
}

StatusOr<std::string> KvTransferClient::UcxAddress(const std::string& decode_worker) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = ucx_addresses_.find(decode_worker);
    if (it != ucx_addresses_.end()) return it->second;
  }
  auto* stub = StubFor(decode_worker);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  attention::v1::WorkerInfo info;
  grpc::Status st = stub->Describe(&ctx, attention::v1::DescribeRequest{}, &info);
  if (!st.ok()) {
    return absl::UnavailableError(StrCat("KV transfer to decode worker ", decode_worker, " failed: ", st.error_message()));
  }
  std::lock_guard<std::mutex> lk(mu_);
  ucx_addresses_[decode_worker] = info.ucx_worker_address();
  return info.ucx_worker_address();
}

StatusOr<KvTransferResult> KvTransferClient::Push(const std::string& decode_worker, const KvExport& ex) {
  const auto t0 = std::chrono::steady_clock::now();
  auto* stub = StubFor(decode_worker);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms_));
  attention::v1::KvTransferResponse resp;
  auto writer = stub->PushKv(&ctx, &resp);
  const int64_t total = static_cast<int64_t>(ex.data.size());
  int64_t off = 0;
  bool first = true;
  bool ok = true;
  while (ok && (first || off < total)) {
    attention::v1::KvTransferChunk chunk;
    if (first) *chunk.mutable_header() = ExportHeader(ex, fingerprint_);
    const int64_t n = std::min(kChunkFloats, total - off);
    chunk.set_offset(off);
    chunk.set_data(reinterpret_cast<const char*>(ex.data.data() + off), static_cast<size_t>(n) * sizeof(float));
    ok = writer->Write(chunk);
    off += n;
    first = false;
  }
  writer->WritesDone();
  grpc::Status st = writer->Finish();
  if (!st.ok()) {
    return absl::UnavailableError(StrCat("KV transfer to decode worker ", decode_worker, " failed: ",
                                         st.error_message(), " (grpc code ", static_cast<int>(st.error_code()), ")"));
  }
  KvTransferResult r;
  r.handle = resp.kv_handle();
  r.bytes = total * static_cast<int64_t>(sizeof(float));
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace dsv3
