// Log-probabilities of the raw model distribution for one row of logits: log_softmax in
// float64 of the unprocessed logits (NaN counts as -inf; a row whose maximum is not finite
// is a uniform point mass on the ids holding it), the given token's value and the k most
// likely tokens in the order (logprob desc, id asc). What the sampler reports for sampled
// tokens and the engine for prompt tokens (echo / prompt logprobs), so both agree exactly.
#pragma once

#include <cstdint>

#include "common/sampling/sequence_sampler.h"

namespace dsv3 {

// top_k <= 0: no alternatives.
SampledToken RawLogprobs(const float* logits, int64_t vocab, int64_t token, int64_t top_k);

}  // namespace dsv3
