// JsonConstraint: constrained decoding for response_format json_object. One per generated
// sequence: Mask() marks the vocabulary entries whose bytes keep the output the prefix of a
// JSON object (EOS only once the object has closed, and then nothing else), Accept() moves
// past the token the sampler drew. The mask goes to SequenceSampler::Sample, which applies
// it after bias and penalties, so logprobs stay those of the raw model distribution.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/sampling/json_automaton.h"
#include "common/status.h"

namespace dsv3 {

// The bytes of every token id (empty: never produced under a constraint, e.g. special and
// added tokens) and the id that ends generation.
struct TokenBytes {
  std::vector<std::string> bytes;  // [vocab_size]
  int64_t eos_token_id = -1;
  // From IndexForJson: 1 where the bytes are plain string content (no '"', '\\' or
  // controls, whole UTF-8), valid inside any string without simulating them. Empty: Mask
  // simulates every token.
  std::vector<uint8_t> string_plain;
};

// Fills `string_plain` (once per vocabulary; Mask is ~4x faster inside strings with it).
void IndexForJson(TokenBytes* vocab);

class JsonConstraint {
 public:
  explicit JsonConstraint(std::shared_ptr<const TokenBytes> vocab) : vocab_(std::move(vocab)) {}

  // allowed[id] = 1 where token id may come next, else 0; sized to the vocabulary.
  void Mask(std::vector<uint8_t>* allowed) const;
  // False if `token` was not allowed (the state is then unchanged).
  bool Accept(int64_t token);
  bool done() const { return state_.done(); }
  bool in_plain_string() const { return state_.in_plain_string(); }

  std::string Serialize() const { return state_.Serialize(); }
  Status Restore(std::string_view state);

 private:
  std::shared_ptr<const TokenBytes> vocab_;
  JsonAutomaton state_;
};

}  // namespace dsv3
