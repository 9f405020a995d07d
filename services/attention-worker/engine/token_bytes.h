// The vocabulary as bytes for constrained decoding, from the checkpoint's tokenizer.json:
// each id's raw bytes, empty for added and special tokens (never produced under a
// constraint) and for ids the tokenizer does not have.
#pragma once

#include <memory>
#include <string>

#include "common/sampling/json_constraint.h"
#include "common/status.h"

namespace dsv3 {

StatusOr<std::shared_ptr<const TokenBytes>> LoadTokenBytes(const std::string& tokenizer_dir, int64_t vocab_size,
                                                           int64_t eos_token_id);

}  // namespace dsv3
