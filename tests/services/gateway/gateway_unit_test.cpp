// Unit tests of the gateway's request/response logic: request parsing and validation
// (every error names its parameter), stop strings across token boundaries, the DeepSeek
// tool-call parser, the reasoning parser, SSE framing, API keys, config flags, the
// router's prefix hash, and a choice's whole text pipeline on the real tokenizer.
#include <gtest/gtest.h>

#include <map>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "gateway_test_env.h"
#include "services/attention-worker/kv_cache/block_pool.h"
#include "services/gateway/api_keys.h"
#include "services/gateway/chat_request.h"
#include "services/gateway/choice_output.h"
#include "services/gateway/completion_request.h"
#include "services/gateway/gateway_config.h"
#include "services/gateway/json_body.h"
#include "services/gateway/reasoning_parser.h"
#include "services/gateway/router.h"
#include "services/gateway/sse_writer.h"
#include "services/gateway/stop_matcher.h"
#include "services/gateway/tool_call_parser.h"

namespace dsv3::gateway {
namespace {

Json J(const char* s) { return Json::parse(s); }

std::string ParamOfChatError(const char* body) {
  auto r = ParseChatRequest(J(body), RequestLimits());
  if (r.ok()) return "<ok>";
  return r.error().param.value_or("<null>");
}

TEST(ChatRequestTest, ValidRequestIsNormalised) {
  auto r = ParseChatRequest(J(R"({"model":"m","messages":[{"role":"developer","content":"sys"},
      {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
      {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":{"x":1}}}]},
      {"role":"tool","tool_call_id":"c1","content":"42"}],
      "max_tokens":5,"max_completion_tokens":7,"temperature":0.5,"top_p":0.9,"top_k":-1,"n":2,"stop":"END",
      "seed":-1,"logit_bias":{"12":-100},"logprobs":true,"top_logprobs":3,"stream":true,
      "stream_options":{"include_usage":true},"response_format":{"type":"text"},"extra":1})"),
                            RequestLimits());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->messages[0]["role"], "system");
  EXPECT_EQ(r->messages[1]["content"], "a\nb");
  EXPECT_TRUE(r->messages[2]["content"].is_null());
  EXPECT_EQ(r->messages[2]["tool_calls"][0]["function"]["arguments"], "{\"x\":1}");
  EXPECT_EQ(*r->params.max_tokens, 7);  // max_completion_tokens wins
  EXPECT_EQ(r->params.top_k, 0);
  EXPECT_EQ(r->params.n, 2);
  EXPECT_EQ(r->params.stop, std::vector<std::string>{"END"});
  EXPECT_EQ(*r->params.seed, ~0ull);
  EXPECT_EQ(r->params.logit_bias.size(), 1u);
  EXPECT_TRUE(r->params.stream && r->params.include_usage);
  EXPECT_EQ(r->top_logprobs, 3);
}

TEST(ChatRequestTest, EveryErrorNamesItsParameter) {
  EXPECT_EQ(ParamOfChatError(R"({})"), "messages");
  EXPECT_EQ(ParamOfChatError(R"({"messages":"hi"})"), "messages");
  EXPECT_EQ(ParamOfChatError(R"({"messages":[]})"), "messages");
  EXPECT_EQ(ParamOfChatError(R"({"messages":[5]})"), "messages[0]");
  EXPECT_EQ(ParamOfChatError(R"({"messages":[{"content":"x"}]})"), "messages[0].role");
  EXPECT_EQ(ParamOfChatError(R"({"messages":[{"role":"user"}]})"), "messages[0].content");
  EXPECT_EQ(ParamOfChatError(R"({"messages":[{"role":"user","content":[{"type":"image_url"}]}]})"),
            "messages[0].content[0].type");
  EXPECT_EQ(ParamOfChatError(R"({"messages":[{"role":"user","content":[{"type":"text","text":1}]}]})"),
            "messages[0].content[0].text");
  const char* m = R"("messages":[{"role":"user","content":"x"}])";
  auto with = [&](const std::string& extra) {
    std::string body = "{";  // appends: GCC 12's -Wrestrict misfires on "x" + std::string
    body.append(m).append(",").append(extra).append("}");
    return ParamOfChatError(body.c_str());
  };
  EXPECT_EQ(with(R"("temperature":"x")"), "temperature");
  EXPECT_EQ(with(R"("temperature":2.5)"), "temperature");
  EXPECT_EQ(with(R"("top_p":0)"), "top_p");
  EXPECT_EQ(with(R"("top_k":-2)"), "top_k");
  EXPECT_EQ(with(R"("min_p":2)"), "min_p");
  EXPECT_EQ(with(R"("n":0)"), "n");
  EXPECT_EQ(with(R"("n":17)"), "n");
  EXPECT_EQ(with(R"("n":1.5)"), "n");
  EXPECT_EQ(with(R"("max_tokens":-1)"), "max_tokens");
  EXPECT_EQ(with(R"("max_completion_tokens":"5")"), "max_completion_tokens");
  EXPECT_EQ(with(R"("presence_penalty":3)"), "presence_penalty");
  EXPECT_EQ(with(R"("frequency_penalty":-3)"), "frequency_penalty");
  EXPECT_EQ(with(R"("repetition_penalty":0)"), "repetition_penalty");
  EXPECT_EQ(with(R"("stop":5)"), "stop");
  EXPECT_EQ(with(R"("stop":[""])"), "stop");
  EXPECT_EQ(with(R"("logit_bias":[])"), "logit_bias");
  EXPECT_EQ(with(R"("logit_bias":{"999999999":1})"), "logit_bias");
  EXPECT_EQ(with(R"("logit_bias":{"1":"a"})"), "logit_bias");
  EXPECT_EQ(with(R"("logprobs":"yes")"), "logprobs");
  EXPECT_EQ(with(R"("top_logprobs":5)"), "top_logprobs");  // needs logprobs: true
  EXPECT_EQ(with(R"("stream":"yes")"), "stream");
  EXPECT_EQ(with(R"("stream_options":{"include_usage":1})"), "stream_options.include_usage");
  EXPECT_EQ(with(R"("seed":"x")"), "seed");
  EXPECT_EQ(with(R"("response_format":{"type":"json_schema","json_schema":{}})"), "response_format");
  EXPECT_EQ(with(R"("tools":{})"), "tools");
  EXPECT_EQ(with(R"("tools":[{"type":"function","function":{}}])"), "tools[0].function.name");
  EXPECT_EQ(with(R"("tool_choice":"sometimes")"), "tool_choice");
  EXPECT_EQ(with(R"("user":5)"), "user");
  EXPECT_EQ(with(R"("model":5)"), "model");
  EXPECT_EQ(with(R"("unknown_field":{"a":[1,2]})"), "<ok>");
}

TEST(CompletionRequestTest, PromptShapes) {
  RequestLimits lim;
  auto one = ParseCompletionRequest(J(R"({"prompt":"hi"})"), lim);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->prompts.size(), 1u);
  EXPECT_EQ(*one->params.max_tokens, 16);  // the legacy default
  auto list = ParseCompletionRequest(J(R"({"prompt":["a","b"],"n":2,"echo":true,"logprobs":2})"), lim);
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->prompts.size(), 2u);
  EXPECT_EQ(list->logprobs, 2);
  auto ids = ParseCompletionRequest(J(R"({"prompt":[1,2,3]})"), lim);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->prompts[0].ids, (std::vector<int32_t>{1, 2, 3}));
  auto idlists = ParseCompletionRequest(J(R"({"prompt":[[1],[2,3]]})"), lim);
  ASSERT_TRUE(idlists.ok());
  EXPECT_EQ(idlists->prompts.size(), 2u);
  for (const char* bad : {R"({})", R"({"prompt":""})", R"({"prompt":[]})", R"({"prompt":[[]]})", R"({"prompt":[1,"a"]})",
                          R"({"prompt":5})", R"({"prompt":[-1]})", R"({"prompt":[["x"]]})"}) {
    auto r = ParseCompletionRequest(J(bad), lim);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().param.value_or(""), "prompt") << bad;
  }
  auto lp = ParseCompletionRequest(J(R"({"prompt":"x","logprobs":true})"), lim);
  ASSERT_FALSE(lp.ok());
  EXPECT_EQ(*lp.error().param, "logprobs");
  auto sfx = ParseCompletionRequest(J(R"({"prompt":"x","suffix":"y"})"), lim);
  ASSERT_FALSE(sfx.ok());
  EXPECT_EQ(*sfx.error().param, "suffix");
}

TEST(JsonBodyTest, DepthUtf8AndShape) {
  EXPECT_EQ(JsonNestingDepth(R"({"a":[{"b":"[[[["}]})"), 3);
  EXPECT_TRUE(ParseJsonObject(R"({"a":1})").ok());
  EXPECT_FALSE(ParseJsonObject("").ok());
  EXPECT_FALSE(ParseJsonObject("[1]").ok());
  EXPECT_FALSE(ParseJsonObject("{\"a\":").ok());
  EXPECT_FALSE(ParseJsonObject("{\"a\":\"\xc3\x28\"}").ok());
  std::string deep = std::string(65, '[') + std::string(65, ']');
  auto d = ParseJsonObject("{\"a\":" + deep + "}");
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().message.find("nesting"), std::string::npos);
  EXPECT_TRUE(ParseJsonObject("{\"a\":" + std::string(62, '[') + std::string(62, ']') + "}").ok());
  // Error objects always have the four fields.
  const Json e = Json::parse(BadRequest("temperature", "bad").ToJson());
  EXPECT_EQ(e["error"]["param"], "temperature");
  EXPECT_EQ(e["error"]["type"], "invalid_request_error");
  EXPECT_TRUE(e["error"]["code"].is_null());
}

// Feeds `pieces` one by one; returns the concatenated output.
std::string RunStops(const std::vector<std::string>& stops, const std::vector<std::string>& pieces, bool* stopped) {
  StopMatcher m(stops);
  std::string out;
  *stopped = false;
  for (const auto& p : pieces) {
    auto r = m.Push(p);
    out += r.text;
    if (r.stopped) {
      *stopped = true;
      return out;
    }
  }
  return out + m.Flush();
}

TEST(StopMatcherTest, MatchesAcrossTokenBoundaries) {
  bool stopped = false;
  EXPECT_EQ(RunStops({"STOP"}, {"abc S", "T", "OP tail"}, &stopped), "abc ");
  EXPECT_TRUE(stopped);
  EXPECT_EQ(RunStops({"STOP"}, {"abc S", "T", "x"}, &stopped), "abc STx");
  EXPECT_FALSE(stopped);
  EXPECT_EQ(RunStops({"\n\n", "END"}, {"one\n", "two\n", "\nthree"}, &stopped), "one\ntwo");
  EXPECT_TRUE(stopped);
  // The earliest match wins even if another stop string completes in the same chunk.
  EXPECT_EQ(RunStops({"cd", "b"}, {"abcd"}, &stopped), "a");
  // Held-back text is released as soon as it cannot match any more.
  StopMatcher m({"hello"});
  EXPECT_EQ(m.Push("say hel").text, "say ");
  EXPECT_EQ(m.Push("p").text, "help");
  EXPECT_EQ(RunStops({}, {"a", "b"}, &stopped), "ab");
  // Multi-byte characters: the stop string itself is UTF-8.
  EXPECT_EQ(RunStops({"。"}, {"你好", "\xe3\x80", "\x82", "再见"}, &stopped), "你好");
  EXPECT_TRUE(stopped);
}

TEST(ToolCallParserTest, ParsesDeepSeekV3Calls) {
  const std::string text =
      "Checking.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
      "{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n"
      "{}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
  // Whole, and byte by byte (markers split anywhere).
  for (size_t step : {text.size(), size_t{1}, size_t{3}}) {
    ToolCallParser p;
    std::string content;
    std::vector<ParsedToolCall> calls;
    for (size_t i = 0; i < text.size(); i += step) {
      auto d = p.Push(text.substr(i, step));
      content += d.content;
      for (auto& c : d.calls) calls.push_back(c);
    }
    auto d = p.Flush();
    content += d.content;
    for (auto& c : d.calls) calls.push_back(c);
    EXPECT_EQ(content, "Checking.") << step;
    ASSERT_EQ(calls.size(), 2u) << step;
    EXPECT_EQ(calls[0].name, "get_weather");
    EXPECT_EQ(calls[0].arguments, "{\"city\": \"Paris\"}");
    EXPECT_EQ(calls[1].name, "get_time");
    EXPECT_EQ(calls[1].arguments, "{}");
    EXPECT_TRUE(p.saw_calls());
  }
  // Plain text passes through; a truncated call is still reported when it has a name.
  ToolCallParser plain;
  EXPECT_EQ(plain.Push("no tools <here>").content, "no tools <here>");
  EXPECT_FALSE(plain.saw_calls());
  ToolCallParser cut;
  cut.Push("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{\"a\":");
  auto d = cut.Flush();
  ASSERT_EQ(d.calls.size(), 1u);
  EXPECT_EQ(d.calls[0].name, "f");
}

// Streamed tool calls: fragments joined by index give exactly the whole calls; the name
// comes first and the arguments flow before the call's end marker arrives.
TEST(ToolCallParserTest, FragmentsStreamArgumentsAsTheyArrive) {
  const std::string args = "{\"city\": \"Paris\", \"days\": [1, 2, 3], \"note\": \"a ```b``` c\"}";
  const std::vector<std::string> texts = {
      "Hi<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n" + args +
          "\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>noop\n```json\n\n```"
          "<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
      // No fence around the arguments.
      "<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n" + args + "<｜tool▁call▁end｜>",
  };
  for (const auto& text : texts) {
    for (size_t step : {size_t{1}, size_t{2}, size_t{5}, text.size()}) {
      SCOPED_TRACE(::testing::Message() << "step " << step << ": " << text.substr(0, 40));
      ToolCallParser p;
      std::vector<ParsedToolCall> calls;
      std::map<int, std::pair<std::string, std::string>> joined;  // index -> name, arguments
      int pieces_before_end = 0;
      auto take = [&](ToolCallParser::Delta d) {
        for (auto& f : d.fragments) {
          auto& j = joined[f.index];
          if (!f.name.empty()) {
            EXPECT_TRUE(j.first.empty()) << "the name comes once";
            j.first = f.name;
          } else {
            EXPECT_FALSE(j.first.empty()) << "the name comes first";
          }
          j.second += f.arguments;
          pieces_before_end += calls.empty() && !f.arguments.empty();
        }
        for (auto& c : d.calls) calls.push_back(c);
      };
      for (size_t i = 0; i < text.size(); i += step) take(p.Push(text.substr(i, step)));
      take(p.Flush());
      ASSERT_FALSE(calls.empty());
      ASSERT_EQ(joined.size(), calls.size());
      for (size_t k = 0; k < calls.size(); ++k) {
        EXPECT_EQ(joined[static_cast<int>(k)].first, calls[k].name);
        EXPECT_EQ(joined[static_cast<int>(k)].second, calls[k].arguments) << "call " << k;
      }
      EXPECT_EQ(calls[0].arguments, args);
      if (step == 1) EXPECT_GT(pieces_before_end, 10) << "arguments stream before the end marker";
    }
  }
}

ReasoningParser::Delta RunReasoning(bool starts_in, const std::vector<std::string>& pieces) {
  ReasoningParser p(starts_in);
  ReasoningParser::Delta all;
  for (const auto& s : pieces) {
    auto d = p.Push(s);
    all.reasoning += d.reasoning;
    all.content += d.content;
  }
  auto d = p.Flush();
  all.reasoning += d.reasoning;
  all.content += d.content;
  return all;
}

TEST(ReasoningParserTest, SplitsThinkBlocks) {
  auto a = RunReasoning(false, {"<th", "ink>let me ", "think</th", "ink>\n\nThe answer."});
  EXPECT_EQ(a.reasoning, "let me think");
  EXPECT_EQ(a.content, "The answer.");
  auto b = RunReasoning(true, {"hmm, ", "so</think>", "42"});  // R1: the prompt opened <think>
  EXPECT_EQ(b.reasoning, "hmm, so");
  EXPECT_EQ(b.content, "42");
  auto c = RunReasoning(false, {"Just ", "an answer"});
  EXPECT_EQ(c.reasoning, "");
  EXPECT_EQ(c.content, "Just an answer");
  auto d = RunReasoning(true, {"never closed"});
  EXPECT_EQ(d.reasoning, "never closed");
  EXPECT_EQ(d.content, "");
  auto e = RunReasoning(false, {"<"});  // undecided at the end: content
  EXPECT_EQ(e.content, "<");
}

TEST(SseTest, Framing) {
  EXPECT_EQ(SseEvent("{\"a\":1}"), "data: {\"a\":1}\n\n");
  EXPECT_EQ(SseEvent("x\ny"), "data: x\ndata: y\n\n");
  EXPECT_EQ(SseDone(), "data: [DONE]\n\n");
  EXPECT_EQ(HttpChunk("hello"), "5\r\nhello\r\n");
  EXPECT_EQ(HttpChunk(std::string(26, 'a')), "1a\r\n" + std::string(26, 'a') + "\r\n");
  EXPECT_EQ(HttpChunk(""), "");
  EXPECT_EQ(HttpLastChunk(), "0\r\n\r\n");
}

TEST(ApiKeysTest, SourcesAndChecks) {
  const std::string file = ::testing::TempDir() + "/gw_keys_" + std::to_string(::getpid());
  {
    std::ofstream f(file);
    f << "# comment\nsk-file\n\n  sk-spaced  \n";
  }
  auto k = ApiKeys::Load({"sk-flag"}, "sk-env1, sk-env2,,", file);
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->size(), 5u);
  EXPECT_TRUE(k->enabled());
  for (const char* good : {"Bearer sk-flag", "Bearer sk-env2", "bearer sk-file", "Bearer   sk-spaced"}) {
    EXPECT_TRUE(k->Authorize(good)) << good;
  }
  for (const char* bad : {"", "sk-flag", "Bearer", "Bearer ", "Bearer sk-fla", "Bearer sk-flagg", "Basic sk-flag",
                          "Bearer # comment"}) {
    EXPECT_FALSE(k->Authorize(bad)) << bad;
  }
  std::remove(file.c_str());
  EXPECT_FALSE(ApiKeys::Load({}, "", "/nonexistent/keys").ok());
  auto none = ApiKeys::Load({}, "", "");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->enabled());
  EXPECT_TRUE(none->Authorize(""));
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
}

TEST(GatewayConfigTest, Flags) {
  auto c = ParseGatewayFlags({"gw", "--listen", "0.0.0.0:8000", "--model-name", "m", "--tokenizer", "/t", "--workers",
                              "a:1, b:2", "--api-key", "k1", "--api-key", "k2", "--max-inflight", "9",
                              "--open-paths", "/health"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->listen_host, "0.0.0.0");
  EXPECT_EQ(c->listen_port, 8000);
  EXPECT_EQ(c->router.workers, (std::vector<std::string>{"a:1", "b:2"}));
  EXPECT_EQ(c->api_keys.size(), 2u);
  EXPECT_EQ(c->max_inflight, 9);
  EXPECT_EQ(c->open_paths, std::vector<std::string>{"/health"});
  EXPECT_FALSE(ParseGatewayFlags({"gw", "--model-name", "m", "--tokenizer", "/t"}).ok());  // no workers
  EXPECT_FALSE(ParseGatewayFlags({"gw", "--model-name", "m", "--tokenizer", "/t", "--prefill-workers", "a:1"}).ok());
  EXPECT_FALSE(ParseGatewayFlags({"gw", "--model-name", "m", "--tokenizer", "/t", "--workers", "a:1", "--http-threads", "x"}).ok());
  EXPECT_FALSE(ParseGatewayFlags({"gw", "--bogus", "1"}).ok());
}

TEST(RouterTest, FirstBlockHashMatchesTheWorkers) {
  std::vector<int32_t> prompt;
  for (int i = 0; i < 40; ++i) prompt.push_back(i * 7);
  std::vector<int64_t> block(prompt.begin(), prompt.begin() + 16);
  EXPECT_EQ(Router::FirstBlockHash(prompt, 16), HashBlock(0, block.data(), 16));
  // The worker never caches the block holding the last prompt token.
  EXPECT_FALSE(Router::FirstBlockHash(std::vector<int32_t>(16, 1), 16).has_value());
  EXPECT_TRUE(Router::FirstBlockHash(std::vector<int32_t>(17, 1), 16).has_value());
}

TEST(ChoiceOutputTest, PipelineOnTheRealTokenizer) {
  const std::string dir = testing::GatewayTokenizerDir();
  if (dir.empty()) GTEST_SKIP() << "no tokenizer files";
  auto tok = BpeTokenizer::FromDirectory(dir);
  ASSERT_TRUE(tok.ok());
  auto ids = (*tok)->Encode("<think>plan it</think>\n\nDone 😀 here. STOP and more");
  ASSERT_TRUE(ids.ok());
  ChoiceOutputOptions o;
  o.stop = {"STOP"};
  o.reasoning = true;
  ChoiceOutput c(**tok, o);
  std::string content, reasoning;
  for (int32_t id : *ids) {
    attention::v1::ChoiceDelta d;
    d.add_token_ids(id);
    auto out = c.Push(d);
    content += out.content;
    reasoning += out.reasoning;
    if (c.finished()) break;
  }
  EXPECT_TRUE(c.finished());
  EXPECT_EQ(c.finish_reason(), "stop");
  EXPECT_TRUE(c.stopped_by_string());
  EXPECT_EQ(reasoning, "plan it");
  EXPECT_EQ(content, "Done 😀 here. ");
  EXPECT_LT(c.completion_tokens(), static_cast<int>(ids->size()));
  // EOS (a special token) never shows up as text; the worker's finish reason ends the choice.
  ChoiceOutput e(**tok, ChoiceOutputOptions());
  attention::v1::ChoiceDelta d;
  d.add_token_ids(ids->front());
  d.add_token_ids(1);
  d.set_finish_reason(attention::v1::FINISH_LENGTH);
  auto out = e.Push(d);
  EXPECT_EQ(e.finish_reason(), "length");
  EXPECT_EQ(out.content.find("end▁of▁sentence"), std::string::npos);
}

}  // namespace
}  // namespace dsv3::gateway
