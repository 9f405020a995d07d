// KvSequence: how the model reads and writes one sequence's compressed MLA cache,
// whatever holds it. Each position of each layer is latent_dim floats (kv_lora_rank
// normalized latent values, then qk_rope_head_dim rotated k_pe). Positions are exposed as
// contiguous runs so a paged cache (fixed-size blocks) and a contiguous one share the
// attention code: the attention loops over runs instead of assuming one array.
//
// Protocol per forward step: Prepare(new_length) before the step (room for the positions
// the step writes), Run() during it, Commit(new_length) after it succeeded.
#pragma once

#include <cstdint>

#include "common/status.h"

namespace dsv3 {

class KvSequence {
 public:
  virtual ~KvSequence() = default;
  virtual int64_t latent_dim() const = 0;
  // Positions [0, length) are valid in every layer.
  virtual int64_t length() const = 0;
  // Makes room for positions [0, new_length); fails if the storage cannot hold them.
  virtual Status Prepare(int64_t new_length) = 0;
  // The storage of position `pos` in `layer` and how many positions follow it contiguously
  // (at least 1; runs never cross the prepared length).
  virtual float* Run(int64_t layer, int64_t pos, int64_t* contiguous) = 0;
  virtual void Commit(int64_t new_length) = 0;
};

}  // namespace dsv3
