// Unit tests of dsv3-bench's pure parts: percentiles, the report's arithmetic, length
// specs, seeded workloads and arrivals, SSE framing and OpenAI stream events.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "tools/bench-serving/arrival_schedule.h"
#include "tools/bench-serving/bench_report.h"
#include "tools/bench-serving/latency_stats.h"
#include "tools/bench-serving/length_spec.h"
#include "tools/bench-serving/sse_parser.h"
#include "tools/bench-serving/stream_event.h"
#include "tools/bench-serving/workload.h"

namespace dsv3::bench {
namespace {

TEST(LatencyStats, PercentilesInterpolateLikeNumpy) {
  const std::vector<double> v = {1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(Percentile(v, 50), 2.5);
  EXPECT_DOUBLE_EQ(Percentile(v, 90), 3.7);   // numpy.percentile([1,2,3,4], 90)
  EXPECT_DOUBLE_EQ(Percentile(v, 99), 3.97);
  EXPECT_DOUBLE_EQ(Percentile(v, 0), 1);
  EXPECT_DOUBLE_EQ(Percentile(v, 100), 4);
  EXPECT_DOUBLE_EQ(Percentile({7}, 99), 7);
}

TEST(LatencyStats, SummarizeSortsAndHandlesEmpty) {
  const LatencySummary s = Summarize({5, 1, 3});
  EXPECT_EQ(s.count, 3);
  EXPECT_DOUBLE_EQ(s.mean, 3);
  EXPECT_DOUBLE_EQ(s.min, 1);
  EXPECT_DOUBLE_EQ(s.max, 5);
  EXPECT_DOUBLE_EQ(s.p50, 3);
  const LatencySummary e = Summarize({});
  EXPECT_EQ(e.count, 0);
  EXPECT_EQ(e.mean, 0);
}

TEST(BenchReport, ThroughputTpotAndOutcomes) {
  RequestResult a;
  a.outcome = RequestOutcome::kCompleted;
  a.ttft_s = 0.1;
  a.e2e_s = 1.1;
  a.itl_s = {0.25, 0.25, 0.25, 0.25};
  a.prompt_tokens = 100;
  a.output_tokens = 5;
  a.usage_reported = true;
  RequestResult b = a;
  b.ttft_s = 0.3;
  b.e2e_s = 0.3;
  b.itl_s = {};
  b.output_tokens = 1;  // no TPOT for a single token
  RequestResult f;
  f.outcome = RequestOutcome::kFailed;
  f.error = "HTTP 429: busy";
  RequestResult f2 = f;
  RequestResult cut;
  cut.outcome = RequestOutcome::kCutByDeadline;
  const BenchReport r = BuildReport({a, b, f, f2, cut}, 7, 2.0);
  EXPECT_EQ(r.completed, 2);
  EXPECT_EQ(r.failed, 2);
  EXPECT_EQ(r.cut_by_deadline, 1);
  EXPECT_EQ(r.not_sent, 2);
  EXPECT_DOUBLE_EQ(r.request_throughput, 1.0);
  EXPECT_DOUBLE_EQ(r.input_throughput, 100.0);
  EXPECT_DOUBLE_EQ(r.output_throughput, 3.0);
  EXPECT_DOUBLE_EQ(r.total_token_throughput, 103.0);
  EXPECT_EQ(r.tpot.count, 1);
  EXPECT_DOUBLE_EQ(r.tpot.mean, 0.25);  // (1.1 - 0.1) / (5 - 1)
  EXPECT_EQ(r.itl.count, 4);
  EXPECT_DOUBLE_EQ(r.ttft.p50, 0.2);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].second, 2);
  const auto j = r.ToJson();
  EXPECT_DOUBLE_EQ(j["tpot_ms"]["mean"].get<double>(), 250.0);
  EXPECT_NE(r.ToTable("t", {}).find("TPOT"), std::string::npos);
}

TEST(LengthSpec, ParsesFixedAndUniform) {
  std::string err;
  auto f = ParseLengthSpec("fixed:256", &err);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->lo, 256);
  EXPECT_EQ(f->hi, 256);
  auto u = ParseLengthSpec("uniform:10:20", &err);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->ToString(), "uniform:10:20");
  for (const char* bad : {"fixed:0", "fixed:", "uniform:5:4", "uniform:1", "256", "fixed:-3", "gauss:1:2"}) {
    EXPECT_FALSE(ParseLengthSpec(bad, &err)) << bad;
  }
}

TEST(Workload, SeededExactLengthsAndRanges) {
  WorkloadOptions o;
  o.count = 50;
  o.prompt_len = {3, 40};
  o.output_len = {1, 8};
  o.seed = 7;
  const auto a = BuildWorkload(o), b = BuildWorkload(o);
  ASSERT_EQ(a.size(), 50u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].prompt_ids, b[i].prompt_ids);
    EXPECT_GE(a[i].prompt_ids.size(), 3u);
    EXPECT_LE(a[i].prompt_ids.size(), 40u);
    EXPECT_GE(a[i].output_len, 1);
    EXPECT_LE(a[i].output_len, 8);
    for (int64_t id : a[i].prompt_ids) {
      EXPECT_GE(id, o.min_token_id);
      EXPECT_LE(id, o.max_token_id);
    }
  }
  o.seed = 8;
  EXPECT_NE(BuildWorkload(o)[0].prompt_ids, a[0].prompt_ids);
  o.kind = PromptKind::kText;
  o.prompt_len = {5, 5};
  const auto t = BuildWorkload(o);
  EXPECT_EQ(std::count(t[0].prompt_text.begin(), t[0].prompt_text.end(), ' '), 4);
}

TEST(Arrivals, PoissonMeanGapAndDeterminism) {
  const auto a = PoissonArrivals(20000, 4.0, 1);
  ASSERT_EQ(a.size(), 20000u);
  EXPECT_EQ(a[0], 0);
  for (size_t i = 1; i < a.size(); ++i) ASSERT_GE(a[i], a[i - 1]);
  const double mean_gap = a.back() / static_cast<double>(a.size() - 1);
  EXPECT_NEAR(mean_gap, 0.25, 0.01);
  EXPECT_EQ(PoissonArrivals(10, 4.0, 1), PoissonArrivals(10, 4.0, 1));
}

TEST(SseParser, EventsAcrossPiecesAndLineEndings) {
  SseParser p;
  EXPECT_TRUE(p.Feed("data: {\"a\"").empty());
  auto e = p.Feed(":1}\n\ndata: x\r\n\r\n: comment\n\ndata: l1\ndata: l2\n");
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0], "{\"a\":1}");
  EXPECT_EQ(e[1], "x");
  e = p.Feed("\n");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0], "l1\nl2");
}

TEST(StreamEvent, CompletionsChatUsageErrorsDone) {
  EXPECT_TRUE(ParseStreamEvent("[DONE]").done);
  EXPECT_TRUE(ParseStreamEvent("not json").malformed);
  auto c = ParseStreamEvent(R"({"choices":[{"index":0,"text":"hi","finish_reason":null}],"usage":null})");
  EXPECT_TRUE(c.carries_tokens);
  EXPECT_FALSE(c.has_usage);
  EXPECT_FALSE(c.has_finish);
  auto empty = ParseStreamEvent(R"({"choices":[{"index":0,"text":"","finish_reason":"length"}]})");
  EXPECT_FALSE(empty.carries_tokens);
  EXPECT_TRUE(empty.has_finish);
  auto role = ParseStreamEvent(R"({"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]})");
  EXPECT_FALSE(role.carries_tokens);
  auto chat = ParseStreamEvent(R"({"choices":[{"index":0,"delta":{"reasoning_content":"hm"}}]})");
  EXPECT_TRUE(chat.carries_tokens);
  auto u = ParseStreamEvent(R"({"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3}})");
  EXPECT_TRUE(u.has_usage);
  EXPECT_EQ(u.prompt_tokens, 12);
  EXPECT_EQ(u.completion_tokens, 3);
  EXPECT_EQ(ParseStreamEvent(R"({"error":{"message":"boom","type":"x"}})").error, "boom");
}

}  // namespace
}  // namespace dsv3::bench
