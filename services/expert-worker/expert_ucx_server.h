// UCX face of an expert worker: one thread drives a UCX worker, receives ExpertBatch
// messages from any registered client and sends each result back to its sender.
// Clients register through the gRPC ConnectUcx call (handed to this thread by a queue:
// the UCX worker is single-threaded).
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/transport/ucx_worker.h"
#include "services/expert-worker/expert_worker.h"

namespace dsv3 {

class ExpertUcxServer {
 public:
  static StatusOr<std::unique_ptr<ExpertUcxServer>> Start(ExpertWorker& worker);
  ~ExpertUcxServer();
  const std::string& address() const { return address_; }
  Status RegisterClient(const expert_pb::ConnectUcxRequest& req);

 private:
  explicit ExpertUcxServer(ExpertWorker& w) : worker_(w) {}
  void Loop();
  void ProcessConnects();

  struct Client {
    ucp_ep_h ep = nullptr;
    std::unique_ptr<std::atomic<bool>> broken;
  };
  ExpertWorker& worker_;
  std::unique_ptr<UcxWorker> ucx_;
  std::string address_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<expert_pb::ConnectUcxRequest> pending_;
  std::map<uint64_t, Client> clients_;  // loop thread only
};

}  // namespace dsv3
