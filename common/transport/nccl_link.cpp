#include "common/transport/nccl_link.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <cstring>
#include <thread>

namespace dsv3 {
namespace {

constexpr std::string_view kSub = "nccl";

Status CudaError(const char* what, cudaError_t e) {
  return absl::UnavailableError(StrCat("nccl: ", what, ": ", cudaGetErrorString(e)));
}
Status NcclError(const char* what, ncclResult_t r) {
  return absl::UnavailableError(StrCat("nccl: ", what, ": ", ncclGetErrorString(r)));
}

}  // namespace

struct NcclLink::Impl {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  int peer = 0;
  char* dbuf = nullptr;  // device staging buffer
  size_t cap = 0;
  uint64_t* dlen = nullptr;

  Status Reserve(size_t n) {
    if (n <= cap) return absl::OkStatus();
    if (dbuf) cudaFree(dbuf);
    cap = std::max(n, cap * 2);
    cudaError_t e = cudaMalloc(&dbuf, cap);
    if (e != cudaSuccess) return CudaError("cudaMalloc", e);
    return absl::OkStatus();
  }

  // Polls the stream; aborts the communicator on deadline or async error.
  Status Wait(Deadline deadline, const char* what) {
    for (;;) {
      cudaError_t e = cudaStreamQuery(stream);
      if (e == cudaSuccess) return absl::OkStatus();
      if (e != cudaErrorNotReady) return CudaError(what, e);
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm, &async);
      if (async != ncclSuccess && async != ncclInProgress) {
        ncclCommAbort(comm);
        comm = nullptr;
        return NcclError(what, async);
      }
      if (std::chrono::steady_clock::now() > deadline) {
        ncclCommAbort(comm);
        comm = nullptr;
        return absl::DeadlineExceededError(StrCat("nccl: ", what, ": deadline exceeded"));
      }
      std::this_thread::yield();
    }
  }
};

bool NcclAvailable(std::string* why) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    if (why) *why = e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device";
    return false;
  }
  return true;
}

StatusOr<std::string> NcclLink::NewUniqueId() {
  std::string why;
  if (!NcclAvailable(&why)) return absl::FailedPreconditionError(StrCat("nccl: needs a CUDA device: ", why));
  ncclUniqueId id;
  ncclResult_t r = ncclGetUniqueId(&id);
  if (r != ncclSuccess) return NcclError("ncclGetUniqueId", r);
  return std::string(reinterpret_cast<const char*>(&id), sizeof(id));
}

NcclLink::NcclLink(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

NcclLink::~NcclLink() {
  if (!impl_) return;
  if (impl_->comm) ncclCommDestroy(impl_->comm);
  if (impl_->stream) cudaStreamDestroy(impl_->stream);
  if (impl_->dbuf) cudaFree(impl_->dbuf);
  if (impl_->dlen) cudaFree(impl_->dlen);
}

StatusOr<std::unique_ptr<NcclLink>> NcclLink::Join(const std::string& unique_id, int rank, Deadline deadline) {
  if (unique_id.size() != sizeof(ncclUniqueId)) return InvalidArgument(kSub, "malformed ncclUniqueId");
  std::string why;
  if (!NcclAvailable(&why)) return absl::FailedPreconditionError(StrCat("nccl: needs a CUDA device: ", why));
  auto impl = std::make_unique<Impl>();
  impl->peer = 1 - rank;
  // One GPU per rank (NCCL refuses two ranks on one device): rank r uses device r mod n.
  int devices = 1;
  cudaGetDeviceCount(&devices);
  cudaError_t e = cudaSetDevice(rank % std::max(devices, 1));
  if (e != cudaSuccess) return CudaError("cudaSetDevice", e);
  e = cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking);
  if (e != cudaSuccess) return CudaError("cudaStreamCreate", e);
  e = cudaMalloc(&impl->dlen, sizeof(uint64_t));
  if (e != cudaSuccess) return CudaError("cudaMalloc", e);
  ncclUniqueId id;
  std::memcpy(&id, unique_id.data(), sizeof(id));
  // Non-blocking init so the deadline holds while the peer is missing.
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclResult_t r = ncclCommInitRankConfig(&impl->comm, 2, id, rank, &config);
  if (r != ncclSuccess && r != ncclInProgress) return NcclError("ncclCommInitRank", r);
  for (;;) {
    ncclResult_t st = ncclSuccess;
    ncclCommGetAsyncError(impl->comm, &st);
    if (st == ncclSuccess) break;
    if (st != ncclInProgress) return NcclError("ncclCommInitRank", st);
    if (std::chrono::steady_clock::now() > deadline) {
      ncclCommAbort(impl->comm);
      impl->comm = nullptr;
      return absl::DeadlineExceededError("nccl: peer did not join the communicator before the deadline");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return std::unique_ptr<NcclLink>(new NcclLink(std::move(impl)));
}

void NcclLink::Abort() {
  if (impl_ && impl_->comm) ncclCommAbort(impl_->comm);
  if (impl_) impl_->comm = nullptr;
}

Status NcclLink::Send(const std::string& bytes, Deadline deadline) {
  Impl& m = *impl_;
  if (!m.comm) return absl::UnavailableError("nccl: communicator aborted");
  const uint64_t n = bytes.size();
  DSV3_RETURN_IF_ERROR(m.Reserve(n));
  cudaMemcpyAsync(m.dlen, &n, sizeof(n), cudaMemcpyHostToDevice, m.stream);
  cudaMemcpyAsync(m.dbuf, bytes.data(), n, cudaMemcpyHostToDevice, m.stream);
  ncclResult_t r = ncclSend(m.dlen, 1, ncclUint64, m.peer, m.comm, m.stream);
  if (r == ncclSuccess || r == ncclInProgress) r = ncclSend(m.dbuf, n, ncclChar, m.peer, m.comm, m.stream);
  if (r != ncclSuccess && r != ncclInProgress) return NcclError("ncclSend", r);
  return m.Wait(deadline, "send");
}

Status NcclLink::Receive(std::string* bytes, Deadline deadline) {
  Impl& m = *impl_;
  if (!m.comm) return absl::UnavailableError("nccl: communicator aborted");
  ncclResult_t r = ncclRecv(m.dlen, 1, ncclUint64, m.peer, m.comm, m.stream);
  if (r != ncclSuccess && r != ncclInProgress) return NcclError("ncclRecv", r);
  DSV3_RETURN_IF_ERROR(m.Wait(deadline, "receive length"));
  uint64_t n = 0;
  cudaMemcpy(&n, m.dlen, sizeof(n), cudaMemcpyDeviceToHost);
  if (n > static_cast<uint64_t>(kMaxWireMessageBytes) + (1u << 20)) {
    return absl::DataLossError(StrCat("nccl: message of ", n, " bytes exceeds the wire limit"));
  }
  DSV3_RETURN_IF_ERROR(m.Reserve(n));
  r = ncclRecv(m.dbuf, n, ncclChar, m.peer, m.comm, m.stream);
  if (r != ncclSuccess && r != ncclInProgress) return NcclError("ncclRecv", r);
  DSV3_RETURN_IF_ERROR(m.Wait(deadline, "receive"));
  bytes->resize(n);
  cudaMemcpy(bytes->data(), m.dbuf, n, cudaMemcpyDeviceToHost);
  return absl::OkStatus();
}

}  // namespace dsv3
