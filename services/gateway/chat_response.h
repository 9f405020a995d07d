// The JSON of /v1/chat/completions answers: chat.completion objects and
// chat.completion.chunk stream chunks (role delta first, then content / reasoning_content /
// tool_calls deltas, a finish_reason, optional usage chunk), logprobs in the
// choices[].logprobs.content[] shape.
#pragma once

#include <string>
#include <vector>

#include "services/gateway/generation_job.h"

namespace dsv3::gateway {

class ChatResponseFormat : public ResponseFormat {
 public:
  ChatResponseFormat(bool logprobs, bool reasoning_field);
  std::vector<Json> StreamStart(const JobHeader& h, int num_choices) override;
  Json StreamDelta(const JobHeader& h, int index, const ChoiceOutput::Delta& d, const std::string& finish) override;
  Json UsageChunk(const JobHeader& h, const Json& usage) override;
  Json Final(const JobHeader& h, const std::vector<ChoiceResult>& choices, const Json& usage) override;

  static Json LogprobsContent(const std::vector<TokenLogprob>& lps);

 private:
  Json Chunk(const JobHeader& h) const;
  bool logprobs_;
  bool reasoning_field_;
};

// "call_" + 24 random alphanumerics, as OpenAI's ids look.
std::string NewToolCallId();

}  // namespace dsv3::gateway
