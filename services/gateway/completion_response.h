// The JSON of /v1/completions answers: text_completion objects and stream chunks, echo,
// and the legacy logprobs object {tokens, token_logprobs, top_logprobs, text_offset}.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "services/gateway/generation_job.h"

namespace dsv3::gateway {

class CompletionResponseFormat : public ResponseFormat {
 public:
  // `echo_text[i]`: the prompt text echoed before choice group i ("" without echo);
  // `echo_tokens[i]`: its tokens for logprobs, whose values come from the workers' prompt
  // logprobs (the first token's is null). `logprobs` < 0: none.
  CompletionResponseFormat(int n, std::vector<std::string> echo_text, std::vector<std::vector<std::string>> echo_tokens,
                           int64_t logprobs);
  std::vector<Json> StreamStart(const JobHeader& h, int num_choices) override;
  Json StreamDelta(const JobHeader& h, int index, const ChoiceOutput::Delta& d, const std::string& finish) override;
  Json UsageChunk(const JobHeader& h, const Json& usage) override;
  Json Final(const JobHeader& h, const std::vector<ChoiceResult>& choices, const Json& usage) override;
  void PromptLogprobs(size_t prompt, int64_t start, std::vector<TokenLogprob> lps) override;
  std::vector<Json> StreamBeforeDelta(const JobHeader& h, int index) override;

 private:
  Json Chunk(const JobHeader& h) const;
  std::optional<Json> EchoChunk(const JobHeader& h, int index);  // advances offsets_[index]
  // Appends tokens to a legacy logprobs object, advancing *offset (code points).
  static void AppendLogprobs(const std::vector<TokenLogprob>& lps, Json* obj, int64_t* offset);
  void AppendEcho(size_t group, Json* obj, int64_t* offset) const;

  int n_;
  std::vector<std::string> echo_text_;
  std::vector<std::vector<std::string>> echo_tokens_;
  int64_t logprobs_;
  std::vector<int64_t> offsets_;  // per choice, streaming
  std::vector<bool> echo_sent_;   // per choice, streaming
  std::vector<std::vector<std::optional<TokenLogprob>>> prompt_lps_;  // per group, by position
};

// UTF-8 code points in `s` (text_offset counts characters, as the Python clients expect).
int64_t CodePoints(std::string_view s);

}  // namespace dsv3::gateway
