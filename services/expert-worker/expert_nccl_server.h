// NCCL face of an expert worker (GPU builds): each ConnectNccl call starts a thread that
// joins the caller's 2-rank communicator as rank 1 and answers ExpertBatch messages
// until the link fails or the server stops.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "services/expert-worker/expert_worker.h"

namespace dsv3 {

class NcclLink;

class ExpertNcclServer {
 public:
  explicit ExpertNcclServer(ExpertWorker& worker);
  ~ExpertNcclServer();
  // Checks a device is usable, then joins in the background (the caller joins after the
  // RPC returns).
  Status Connect(const expert_pb::ConnectNcclRequest& req);

 private:
  struct Session {
    std::unique_ptr<NcclLink> link;
    std::thread thread;
  };
  ExpertWorker& worker_;
  std::mutex mu_;
  std::vector<std::unique_ptr<Session>> sessions_;
  bool stopping_ = false;
};

}  // namespace dsv3
