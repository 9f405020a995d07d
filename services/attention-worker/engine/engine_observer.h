// EngineObserver: what the engine reports as it runs (for metrics), called on the engine
// thread, so implementations must be quick and must not call back into the engine.
#pragma once

#include <cstdint>

#include "common/model/router.h"
#include "services/attention-worker/engine/generate_request.h"

namespace dsv3 {

struct StepInfo {
  double seconds = 0;       // the forward pass
  int64_t sequences = 0;    // slices in the step
  int64_t tokens = 0;       // tokens computed
  int64_t decode_tokens = 0;
  bool failed = false;
};

class EngineObserver {
 public:
  virtual ~EngineObserver() = default;
  virtual void OnStep(const StepInfo& step) = 0;
  virtual void OnRouting(int64_t layer, const RoutingResult& routing) = 0;
  // Arrival to the first token of the request; queue = arrival to first scheduled.
  virtual void OnFirstToken(double ttft_seconds, double queue_seconds) = 0;
  virtual void OnInterTokenLatency(double seconds) = 0;
  virtual void OnRequestFinished(FinishReason why, double e2e_seconds, int64_t prompt_tokens,
                                 int64_t completion_tokens) = 0;
};

}  // namespace dsv3
