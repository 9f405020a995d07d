#include "services/expert-worker/expert_ucx_server.h"

#include <cstdio>

namespace dsv3 {

StatusOr<std::unique_ptr<ExpertUcxServer>> ExpertUcxServer::Start(ExpertWorker& worker) {
  std::unique_ptr<ExpertUcxServer> s(new ExpertUcxServer(worker));
  DSV3_ASSIGN_OR_RETURN(s->ucx_, UcxWorker::Create());
  s->address_ = s->ucx_->address();
  s->thread_ = std::thread([p = s.get()] { p->Loop(); });
  return s;
}

ExpertUcxServer::~ExpertUcxServer() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  for (auto& [id, c] : clients_) ucx_->Close(c.ep);
}

Status ExpertUcxServer::RegisterClient(const expert_pb::ConnectUcxRequest& req) {
  if (req.client_worker_address().empty()) return InvalidArgument("ucx", "empty client worker address");
  std::lock_guard<std::mutex> lk(mu_);
  pending_.push_back(req);
  return absl::OkStatus();
}

void ExpertUcxServer::ProcessConnects() {
  std::vector<expert_pb::ConnectUcxRequest> reqs;
  {
    std::lock_guard<std::mutex> lk(mu_);
    reqs.swap(pending_);
  }
  for (const auto& r : reqs) {
    auto it = clients_.find(r.client_id());
    if (it != clients_.end()) {
      ucx_->Close(it->second.ep);
      clients_.erase(it);
    }
    Client c;
    c.broken = std::make_unique<std::atomic<bool>>(false);
    auto ep = ucx_->Connect(r.client_worker_address(), c.broken.get());
    if (!ep.ok()) {
      std::fprintf(stderr, "expert worker: UCX connect to client %llu failed: %s\n",
                   static_cast<unsigned long long>(r.client_id()), std::string(ep.status().message()).c_str());
      continue;
    }
    c.ep = *ep;
    clients_.emplace(r.client_id(), std::move(c));
  }
}

void ExpertUcxServer::Loop() {
  std::string msg, out;
  while (!stop_.load()) {
    ProcessConnects();
    uint64_t tag = 0;
    auto got = ucx_->Receive(0, 0, &msg, &tag, Deadline::max(), nullptr, /*max_sleep_ms=*/20);
    if (!got.ok() || !*got) continue;
    // A client registers (gRPC) before its first message, but the registration may still
    // sit in the queue.
    ProcessConnects();
    const uint64_t client = tag >> 32;
    auto it = clients_.find(client);
    if (it == clients_.end() || it->second.broken->load()) continue;  // unknown or gone: nobody to answer
    worker_.HandleSerialized(msg, tag & 0xffffffffu, &out);
    Status st = ucx_->Send(it->second.ep, tag, out, std::chrono::steady_clock::now() + std::chrono::seconds(30),
                           it->second.broken.get());
    if (!st.ok()) {
      ucx_->Close(it->second.ep);
      clients_.erase(it);
    }
  }
}

}  // namespace dsv3
