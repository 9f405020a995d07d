#include "common/sampling/json_constraint.h"

namespace dsv3 {

void JsonConstraint::Mask(std::vector<uint8_t>* allowed) const {
  const auto& bytes = vocab_->bytes;
  allowed->assign(bytes.size(), 0);
  const int64_t eos = vocab_->eos_token_id;
  if (state_.done()) {
    if (eos >= 0 && eos < static_cast<int64_t>(bytes.size())) (*allowed)[static_cast<size_t>(eos)] = 1;
    return;
  }
  for (size_t id = 0; id < bytes.size(); ++id) {
    if (bytes[id].empty() || static_cast<int64_t>(id) == eos) continue;
    JsonAutomaton next = state_;
    (*allowed)[id] = next.Feed(bytes[id]) ? 1 : 0;
  }
}

bool JsonConstraint::Accept(int64_t token) {
  if (token < 0 || token >= static_cast<int64_t>(vocab_->bytes.size())) return false;
  if (token == vocab_->eos_token_id) return state_.done();
  if (state_.done()) return false;
  JsonAutomaton next = state_;
  if (vocab_->bytes[static_cast<size_t>(token)].empty() || !next.Feed(vocab_->bytes[static_cast<size_t>(token)])) {
    return false;
  }
  state_ = next;
  return true;
}

Status JsonConstraint::Restore(std::string_view state) {
  if (!state_.Restore(state)) return DataLoss("sampling", "malformed JSON constraint state");
  return absl::OkStatus();
}

}  // namespace dsv3
