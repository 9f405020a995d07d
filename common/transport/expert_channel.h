// ExpertChannel: one connection from an attention process to one expert worker, over
// one transport (gRPC stream, UCX). The dispatcher only sees this interface; each
// backend keeps its state behind it.
//
// Contract: Send() queues one batch; Receive() returns results in arrival order (match
// them by seq). Every wait has a deadline, so a dead worker becomes an error naming it,
// never a hang. After an error, Reset() drops the connection; the next Send reconnects.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/transport/expert_wire.h"

namespace dsv3 {

using Deadline = std::chrono::steady_clock::time_point;

class ExpertChannel {
 public:
  virtual ~ExpertChannel() = default;
  virtual std::string name() const = 0;  // e.g. "grpc://127.0.0.1:5001"
  virtual Status Send(const expert_pb::ExpertBatch& batch, Deadline deadline) = 0;
  virtual StatusOr<expert_pb::ExpertResult> Receive(Deadline deadline) = 0;
  virtual void Reset() = 0;
};

// "0-63,100,120-127" -> sorted unique ids; each must be < n.
StatusOr<std::vector<int32_t>> ParseExpertRanges(const std::string& spec, int64_t n);
// The inverse, for messages: "0-63,100".
std::string FormatExpertRanges(const std::vector<int32_t>& ids);

}  // namespace dsv3
