// NcclLink: a 2-rank NCCL communicator carrying whole messages (an 8-byte length, then
// the bytes) between an attention process (rank 0) and one expert worker (rank 1),
// staged through device buffers. Every wait polls the stream against a deadline and
// aborts the communicator on expiry or asynchronous error, so a dead peer becomes an
// error, not a hang. Built only with CUDA; exercised only where a GPU exists.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"
#include "common/transport/expert_channel.h"

namespace dsv3 {

class NcclLink {
 public:
  // A fresh ncclUniqueId (rank 0 creates it and hands it to rank 1 over gRPC).
  static StatusOr<std::string> NewUniqueId();
  // Joins the communicator; blocks until both ranks joined or the deadline passes.
  static StatusOr<std::unique_ptr<NcclLink>> Join(const std::string& unique_id, int rank, Deadline deadline);
  ~NcclLink();

  Status Send(const std::string& bytes, Deadline deadline);
  Status Receive(std::string* bytes, Deadline deadline);
  // From another thread: makes pending and later calls fail (shutdown).
  void Abort();

 private:
  struct Impl;
  explicit NcclLink(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Whether a CUDA device is usable here; otherwise why not.
bool NcclAvailable(std::string* why);

}  // namespace dsv3
