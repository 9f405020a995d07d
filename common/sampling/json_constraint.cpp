#include "common/sampling/json_constraint.h"

namespace dsv3 {

void IndexForJson(TokenBytes* vocab) {
  vocab->string_plain.assign(vocab->bytes.size(), 0);
  JsonAutomaton in_string;
  in_string.Feed("{\"");
  for (size_t id = 0; id < vocab->bytes.size(); ++id) {
    const std::string& b = vocab->bytes[id];
    if (b.empty() || b.find_first_of("\"\\") != std::string::npos) continue;
    JsonAutomaton a = in_string;
    vocab->string_plain[id] = a.Feed(b) && a.in_plain_string() ? 1 : 0;
  }
}

void JsonConstraint::Mask(std::vector<uint8_t>* allowed) const {
  const auto& bytes = vocab_->bytes;
  allowed->assign(bytes.size(), 0);
  const int64_t eos = vocab_->eos_token_id;
  if (state_.done()) {
    if (eos >= 0 && eos < static_cast<int64_t>(bytes.size())) (*allowed)[static_cast<size_t>(eos)] = 1;
    return;
  }
  const bool plain = state_.in_plain_string() && vocab_->string_plain.size() == bytes.size();
  // Outside strings most tokens fail on their first byte: decide those from a 256-entry
  // table instead of a state copy each.
  // Many tokens start with a space (" the"): a second table decides their next byte.
  bool first_ok[256], after_space_ok[256];
  JsonAutomaton after_space = state_;
  const bool space_ok = after_space.Feed(" ");
  for (int c = 0; c < 256; ++c) {
    const char ch = static_cast<char>(c);
    JsonAutomaton next = state_;
    first_ok[c] = next.Feed(std::string_view(&ch, 1));
    JsonAutomaton next2 = after_space;
    after_space_ok[c] = space_ok && next2.Feed(std::string_view(&ch, 1));
  }
  for (size_t id = 0; id < bytes.size(); ++id) {
    if (bytes[id].empty() || static_cast<int64_t>(id) == eos) continue;
    if (plain && vocab_->string_plain[id]) {
      (*allowed)[id] = 1;
      continue;
    }
    if (!first_ok[static_cast<uint8_t>(bytes[id][0])]) continue;
    if (bytes[id].size() > 1 && bytes[id][0] == ' ' && !after_space_ok[static_cast<uint8_t>(bytes[id][1])]) continue;
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
