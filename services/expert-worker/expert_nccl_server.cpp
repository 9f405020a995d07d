#include "services/expert-worker/expert_nccl_server.h"

#include <cstdio>

#include "common/transport/nccl_link.h"

namespace dsv3 {

ExpertNcclServer::ExpertNcclServer(ExpertWorker& worker) : worker_(worker) {}

ExpertNcclServer::~ExpertNcclServer() {
  std::vector<std::unique_ptr<Session>> sessions;
  {
    std::lock_guard<std::mutex> lk(mu_);
    stopping_ = true;
    sessions.swap(sessions_);
  }
  for (auto& s : sessions) {
    if (s->link) s->link->Abort();
    if (s->thread.joinable()) s->thread.join();
  }
}

Status ExpertNcclServer::Connect(const expert_pb::ConnectNcclRequest& req) {
  std::string why;
  if (!NcclAvailable(&why)) return absl::FailedPreconditionError(StrCat("expert worker has no usable CUDA device: ", why));
  auto session = std::make_unique<Session>();
  Session* s = session.get();
  std::lock_guard<std::mutex> lk(mu_);
  if (stopping_) return absl::UnavailableError("expert worker is stopping");
  const std::string id = req.unique_id();
  s->thread = std::thread([this, s, id] {
    auto link = NcclLink::Join(id, /*rank=*/1, std::chrono::steady_clock::now() + std::chrono::seconds(60));
    if (!link.ok()) {
      std::fprintf(stderr, "expert worker: NCCL join failed: %s\n", std::string(link.status().message()).c_str());
      return;
    }
    {
      std::lock_guard<std::mutex> g(mu_);
      if (stopping_) return;
      s->link = std::move(*link);
    }
    std::string in, out;
    for (;;) {
      if (!s->link->Receive(&in, Deadline::max()).ok()) return;  // caller gone or aborted
      worker_.HandleSerialized(in, /*fallback_seq=*/0, &out);
      if (!s->link->Send(out, std::chrono::steady_clock::now() + std::chrono::seconds(30)).ok()) return;
    }
  });
  sessions_.push_back(std::move(session));
  return absl::OkStatus();
}

}  // namespace dsv3
