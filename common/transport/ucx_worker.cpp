#include "common/transport/ucx_worker.h"

#include <poll.h>
#include <sched.h>

#include <algorithm>
#include <cstring>

namespace dsv3 {
namespace {

constexpr std::string_view kSub = "ucx";

Status UcsError(const char* what, ucs_status_t s) {
  return absl::UnavailableError(StrCat("ucx: ", what, ": ", ucs_status_string(s)));
}

void EpError(void* arg, ucp_ep_h, ucs_status_t) {
  if (arg) static_cast<std::atomic<bool>*>(arg)->store(true);
}

}  // namespace

StatusOr<std::unique_ptr<UcxWorker>> UcxWorker::Create() {
  std::unique_ptr<UcxWorker> w(new UcxWorker());
  ucp_config_t* config = nullptr;
  ucs_status_t s = ucp_config_read(nullptr, nullptr, &config);
  if (s != UCS_OK) return UcsError("config", s);
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES;
  params.features = UCP_FEATURE_TAG | UCP_FEATURE_WAKEUP;
  s = ucp_init(&params, config, &w->context_);
  ucp_config_release(config);
  if (s != UCS_OK) return UcsError("init", s);
  ucp_worker_params_t wp{};
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wp.thread_mode = UCS_THREAD_MODE_SINGLE;
  s = ucp_worker_create(w->context_, &wp, &w->worker_);
  if (s != UCS_OK) return UcsError("worker", s);
  s = ucp_worker_get_efd(w->worker_, &w->efd_);
  if (s != UCS_OK) return UcsError("event fd", s);
  ucp_address_t* addr = nullptr;
  size_t len = 0;
  s = ucp_worker_get_address(w->worker_, &addr, &len);
  if (s != UCS_OK) return UcsError("address", s);
  w->address_.assign(reinterpret_cast<const char*>(addr), len);
  ucp_worker_release_address(w->worker_, addr);
  return w;
}

UcxWorker::~UcxWorker() {
  if (worker_) ucp_worker_destroy(worker_);
  if (context_) ucp_cleanup(context_);
}

StatusOr<ucp_ep_h> UcxWorker::Connect(const std::string& remote, std::atomic<bool>* broken) {
  if (remote.empty()) return InvalidArgument(kSub, "empty remote worker address");
  ucp_ep_params_t p{};
  p.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE | UCP_EP_PARAM_FIELD_ERR_HANDLER;
  p.address = reinterpret_cast<const ucp_address_t*>(remote.data());
  // Peer-failure handling is what turns a killed worker into an immediate error; UCX then
  // excludes transports without it (shared memory here), so messages ride loopback TCP.
  // Measured trade-off in docs/BENCHMARKS.md.
  p.err_mode = UCP_ERR_HANDLING_MODE_PEER;
  p.err_handler.cb = EpError;
  p.err_handler.arg = broken;
  ucp_ep_h ep = nullptr;
  ucs_status_t s = ucp_ep_create(worker_, &p, &ep);
  if (s != UCS_OK) return UcsError("endpoint", s);
  return ep;
}

void UcxWorker::Close(ucp_ep_h ep) {
  if (!ep) return;
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  p.flags = UCP_EP_CLOSE_FLAG_FORCE;
  void* r = ucp_ep_close_nbx(ep, &p);
  if (UCS_PTR_IS_PTR(r)) {
    while (ucp_request_check_status(r) == UCS_INPROGRESS) ucp_worker_progress(worker_);
    ucp_request_free(r);
  }
}

Status UcxWorker::Wait(void* r, Deadline deadline, const std::atomic<bool>* broken, const char* what) {
  if (r == nullptr) return absl::OkStatus();
  if (UCS_PTR_IS_ERR(r)) return UcsError(what, UCS_PTR_STATUS(r));
  ucs_status_t s;
  uint32_t spins = 0;
  while ((s = ucp_request_check_status(r)) == UCS_INPROGRESS) {
    ucp_worker_progress(worker_);
    if ((++spins & 15) == 0) sched_yield();
    if ((spins & 1023) == 0) {
      if (broken && broken->load()) {
        ucp_request_cancel(worker_, r);
        while (ucp_request_check_status(r) == UCS_INPROGRESS) ucp_worker_progress(worker_);
        ucp_request_free(r);
        return absl::UnavailableError(StrCat("ucx: ", what, ": peer failed"));
      }
      if (std::chrono::steady_clock::now() > deadline) {
        ucp_request_cancel(worker_, r);
        while (ucp_request_check_status(r) == UCS_INPROGRESS) ucp_worker_progress(worker_);
        ucp_request_free(r);
        return absl::DeadlineExceededError(StrCat("ucx: ", what, ": deadline exceeded"));
      }
    }
  }
  ucp_request_free(r);
  if (s != UCS_OK) return UcsError(what, s);
  return absl::OkStatus();
}

Status UcxWorker::Send(ucp_ep_h ep, uint64_t tag, const std::string& bytes, Deadline deadline,
                       const std::atomic<bool>* broken) {
  ucp_request_param_t p{};
  void* r = ucp_tag_send_nbx(ep, bytes.data(), bytes.size(), tag, &p);
  return Wait(r, deadline, broken, "send");
}

Status UcxWorker::WaitAll(std::vector<void*>& reqs, const std::vector<Piece>* receives, Deadline deadline,
                         const std::atomic<bool>* broken, const char* what) {
  Status result = absl::OkStatus();
  for (void* r : reqs) {
    if (UCS_PTR_IS_ERR(r) && result.ok()) result = UcsError(what, UCS_PTR_STATUS(r));
  }
  size_t done = 0;  // requests [0, done) have completed and been freed
  uint32_t spins = 0;
  while (result.ok() && done < reqs.size()) {
    void* r = reqs[done];
    if (r == nullptr || UCS_PTR_IS_ERR(r)) {
      ++done;
      continue;
    }
    const ucs_status_t s = ucp_request_check_status(r);
    if (s != UCS_INPROGRESS) {
      if (s == UCS_OK && receives != nullptr) {
        // A shorter message completes a receive too; every piece must be whole.
        ucp_tag_recv_info_t info{};
        ucp_tag_recv_request_test(r, &info);
        if (info.length != (*receives)[done].bytes) {
          result = absl::DataLossError(StrCat("ucx: ", what, ": piece ", done, " has ", info.length, " bytes, expected ",
                                              (*receives)[done].bytes));
        }
      }
      ucp_request_free(r);
      reqs[done++] = nullptr;
      if (s != UCS_OK) result = UcsError(what, s);
      continue;
    }
    ucp_worker_progress(worker_);
    if ((++spins & 15) == 0) sched_yield();
    if ((spins & 1023) == 0) {
      if (broken && broken->load()) result = absl::UnavailableError(StrCat("ucx: ", what, ": peer failed"));
      else if (std::chrono::steady_clock::now() > deadline)
        result = absl::DeadlineExceededError(StrCat("ucx: ", what, ": deadline exceeded with ", reqs.size() - done, " of ", reqs.size(), " pieces outstanding"));
    }
  }
  // Whatever is still posted is cancelled and reaped: the caller frees the buffers next.
  for (void*& r : reqs) {
    if (r == nullptr || UCS_PTR_IS_ERR(r)) continue;
    if (ucp_request_check_status(r) == UCS_INPROGRESS) ucp_request_cancel(worker_, r);
    while (ucp_request_check_status(r) == UCS_INPROGRESS) ucp_worker_progress(worker_);
    ucp_request_free(r);
    r = nullptr;
  }
  return result;
}

Status UcxWorker::SendAll(ucp_ep_h ep, const std::vector<Piece>& pieces, Deadline deadline,
                          const std::atomic<bool>* broken) {
  std::vector<void*> reqs;
  reqs.reserve(pieces.size());
  for (const Piece& p : pieces) {
    ucp_request_param_t rp{};
    reqs.push_back(ucp_tag_send_nbx(ep, p.data, p.bytes, p.tag, &rp));
  }
  return WaitAll(reqs, nullptr, deadline, broken, "send");
}

Status UcxWorker::ReceiveAll(const std::vector<Piece>& pieces, Deadline deadline, const std::atomic<bool>* broken) {
  std::vector<void*> reqs;
  reqs.reserve(pieces.size());
  for (const Piece& p : pieces) {
    ucp_request_param_t rp{};
    reqs.push_back(ucp_tag_recv_nbx(worker_, p.data, p.bytes, p.tag, ~0ull, &rp));
  }
  return WaitAll(reqs, &pieces, deadline, broken, "receive");
}

bool UcxWorker::Sleep(int timeout_ms) {
  // Arm, then block on the event fd: a waiting process must not burn a core (expert
  // workers and attention share CPUs on small machines).
  if (ucp_worker_arm(worker_) == UCS_ERR_BUSY) return true;
  pollfd p{efd_, POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) > 0;
}

StatusOr<bool> UcxWorker::Receive(uint64_t tag, uint64_t mask, std::string* out, uint64_t* sender_tag, Deadline deadline,
                                  const std::atomic<bool>* broken, int max_sleep_ms) {
  ucp_tag_recv_info_t info{};
  ucp_tag_message_h msg = nullptr;
  const auto start = std::chrono::steady_clock::now();
  auto slept_since = start;
  for (;;) {
    while (ucp_worker_progress(worker_) != 0) {
    }
    msg = ucp_tag_probe_nb(worker_, tag, mask, 1, &info);
    if (msg != nullptr) break;
    if (broken && broken->load()) return absl::UnavailableError("ucx: receive: peer failed");
    const auto now = std::chrono::steady_clock::now();
    if (now > deadline) return false;
    // Poll, yielding the core between rounds: UCX's rendezvous steps need progress on
    // both sides, and not every transport signals the event fd (shared memory may not),
    // so a sleeping peer stalls big messages. After 5 ms of silence fall back to 1 ms
    // event-fd waits, and do not spin at all when nothing arrived for 100 ms: an idle
    // process (a KV listener re-entering every max_sleep_ms) must not burn a core.
    if (now - start < std::chrono::milliseconds(5) && now - last_message_ < std::chrono::milliseconds(100)) {
      sched_yield();
      continue;
    }
    if (max_sleep_ms < 1000 && now - slept_since >= std::chrono::milliseconds(max_sleep_ms)) return false;
    Sleep(1);
  }
  out->resize(info.length);
  ucp_request_param_t p{};
  void* r = ucp_tag_msg_recv_nbx(worker_, out->data(), info.length, msg, &p);
  DSV3_RETURN_IF_ERROR(Wait(r, Deadline::max(), nullptr, "receive"));
  if (sender_tag) *sender_tag = info.sender_tag;
  last_message_ = std::chrono::steady_clock::now();
  return true;
}

}  // namespace dsv3
