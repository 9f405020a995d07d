#include "services/gateway/choice_output.h"

namespace dsv3::gateway {

std::string TokenText(const BpeTokenizer& tokenizer, int64_t id) {
  if (id < 0 || id > INT32_MAX) return "";
  auto piece = tokenizer.GetPiece(static_cast<int32_t>(id));
  if (!piece.ok()) return "";
  return std::string(piece->bytes);
}

TokenLogprob MakeTokenLogprob(const BpeTokenizer& tokenizer, int64_t id, const attention::v1::TokenLogprobs* lp) {
  TokenLogprob t;
  t.id = static_cast<int32_t>(id);
  t.token = TokenText(tokenizer, id);
  if (lp != nullptr) {
    t.logprob = lp->logprob();
    for (const auto& e : lp->top()) t.top.emplace_back(TokenText(tokenizer, e.id()), e.logprob());
  }
  return t;
}

ChoiceOutput::ChoiceOutput(const BpeTokenizer& tokenizer, ChoiceOutputOptions options)
    : tokenizer_(tokenizer),
      options_(std::move(options)),
      detok_(tokenizer, DecodeOptions{/*skip_special_tokens=*/true}),
      stop_(options_.stop) {
  if (options_.reasoning) reasoning_.emplace(options_.starts_in_reasoning);
  if (options_.tool_calls) tools_.emplace();
}

void ChoiceOutput::ProcessText(const std::string& text, Delta* d) {
  if (text.empty()) return;
  std::string content = text;
  if (reasoning_) {
    auto r = reasoning_->Push(content);
    d->reasoning += r.reasoning;
    content = std::move(r.content);
  }
  if (tools_) {
    auto t = tools_->Push(content);
    d->content += t.content;
    for (auto& c : t.calls) d->calls.push_back(std::move(c));
    for (auto& f : t.fragments) d->call_pieces.push_back(std::move(f));
  } else {
    d->content += content;
  }
}

void ChoiceOutput::FlushAll(Delta* d) {
  std::string tail = detok_.Finish();
  if (stop_.stopped()) {
    tail.clear();  // text after a stop string is never shown
  } else {
    auto r = stop_.Push(tail);
    tail = std::move(r.text);
    if (!r.stopped) tail += stop_.Flush();
  }
  ProcessText(tail, d);
  if (reasoning_) {
    auto r = reasoning_->Flush();
    d->reasoning += r.reasoning;
    if (tools_) {
      auto t = tools_->Push(r.content);
      d->content += t.content;
      for (auto& c : t.calls) d->calls.push_back(std::move(c));
      for (auto& f : t.fragments) d->call_pieces.push_back(std::move(f));
    } else {
      d->content += r.content;
    }
  }
  if (tools_) {
    auto t = tools_->Flush();
    d->content += t.content;
    for (auto& c : t.calls) d->calls.push_back(std::move(c));
    for (auto& f : t.fragments) d->call_pieces.push_back(std::move(f));
  }
}

ChoiceOutput::Delta ChoiceOutput::Push(const attention::v1::ChoiceDelta& cd) {
  Delta d;
  if (finished_) return d;
  for (int k = 0; k < cd.token_ids_size() && !finished_; ++k) {
    const int64_t id = cd.token_ids(k);
    ++tokens_;
    ids_.push_back(static_cast<int32_t>(id));
    if (options_.logprobs) d.logprobs.push_back(MakeTokenLogprob(tokenizer_, id, k < cd.logprobs_size() ? &cd.logprobs(k) : nullptr));
    auto text = detok_.Push(static_cast<int32_t>(id));
    if (!text.ok()) continue;  // an id the tokenizer does not know adds no text
    auto r = stop_.Push(*text);
    ProcessText(r.text, &d);
    if (r.stopped) {
      finished_ = true;
      finish_reason_ = "stop";
    }
  }
  if (!finished_) {
    const auto f = cd.finish_reason();
    if (f == attention::v1::FINISH_STOP || f == attention::v1::FINISH_ABORT) {
      finished_ = true;
      finish_reason_ = "stop";
    } else if (f == attention::v1::FINISH_LENGTH) {
      finished_ = true;
      finish_reason_ = "length";
    }
    if (finished_) FlushAll(&d);
  } else {
    FlushAll(&d);
  }
  if (finished_ && tools_ && tools_->saw_calls() && finish_reason_ == "stop") finish_reason_ = "tool_calls";
  return d;
}

ChoiceOutput::Delta ChoiceOutput::Finish(const std::string& reason) {
  Delta d;
  if (finished_) return d;
  finished_ = true;
  finish_reason_ = reason;
  FlushAll(&d);
  if (tools_ && tools_->saw_calls() && finish_reason_ == "stop") finish_reason_ = "tool_calls";
  return d;
}

}  // namespace dsv3::gateway
