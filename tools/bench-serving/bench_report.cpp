#include "tools/bench-serving/bench_report.h"

#include <algorithm>
#include <cstdio>
#include <map>

namespace dsv3::bench {

BenchReport BuildReport(const std::vector<RequestResult>& sent, int64_t planned, double duration_s) {
  BenchReport r;
  r.duration_s = duration_s;
  r.not_sent = std::max<int64_t>(0, planned - static_cast<int64_t>(sent.size()));
  std::vector<double> ttft, tpot, itl, e2e;
  std::map<std::string, int64_t> errors;
  for (const auto& q : sent) {
    if (q.outcome == RequestOutcome::kFailed) {
      ++r.failed;
      ++errors[q.error.empty() ? "unknown" : q.error];
      continue;
    }
    if (q.outcome == RequestOutcome::kCutByDeadline) {
      ++r.cut_by_deadline;
      continue;
    }
    ++r.completed;
    r.input_tokens += q.prompt_tokens;
    r.output_tokens += q.output_tokens;
    if (!q.usage_reported) ++r.requests_without_usage;
    if (q.ttft_s >= 0) ttft.push_back(q.ttft_s);
    e2e.push_back(q.e2e_s);
    if (q.output_tokens > 1 && q.ttft_s >= 0) {
      tpot.push_back((q.e2e_s - q.ttft_s) / static_cast<double>(q.output_tokens - 1));
    }
    itl.insert(itl.end(), q.itl_s.begin(), q.itl_s.end());
  }
  if (duration_s > 0) {
    r.request_throughput = static_cast<double>(r.completed) / duration_s;
    r.input_throughput = static_cast<double>(r.input_tokens) / duration_s;
    r.output_throughput = static_cast<double>(r.output_tokens) / duration_s;
    r.total_token_throughput = static_cast<double>(r.input_tokens + r.output_tokens) / duration_s;
  }
  r.ttft = Summarize(std::move(ttft));
  r.tpot = Summarize(std::move(tpot));
  r.itl = Summarize(std::move(itl));
  r.e2e = Summarize(std::move(e2e));
  r.errors.assign(errors.begin(), errors.end());
  std::stable_sort(r.errors.begin(), r.errors.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  return r;
}

nlohmann::json BenchReport::ToJson() const {
  nlohmann::json j;
  j["completed"] = completed;
  j["failed"] = failed;
  j["cut_by_deadline"] = cut_by_deadline;
  j["not_sent"] = not_sent;
  j["duration_s"] = duration_s;
  j["total_input_tokens"] = input_tokens;
  j["total_output_tokens"] = output_tokens;
  j["requests_without_usage"] = requests_without_usage;
  j["request_throughput"] = request_throughput;
  j["input_throughput"] = input_throughput;
  j["output_throughput"] = output_throughput;
  j["total_token_throughput"] = total_token_throughput;
  j["ttft_ms"] = ttft.ToJson(1e3);
  j["tpot_ms"] = tpot.ToJson(1e3);
  j["itl_ms"] = itl.ToJson(1e3);
  j["e2e_ms"] = e2e.ToJson(1e3);
  nlohmann::json errs = nlohmann::json::array();
  for (const auto& [msg, n] : errors) errs.push_back({{"error", msg}, {"count", n}});
  j["errors"] = errs;
  return j;
}

namespace {

std::string Line(const char* label, const std::string& value) {
  char buf[256];
  std::snprintf(buf, sizeof(buf), "%-36s %s\n", label, value.c_str());
  return buf;
}

std::string Num(double v, int digits = 2) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

std::string Row(const char* name, const LatencySummary& s) {
  char buf[256];
  if (s.count == 0) {
    std::snprintf(buf, sizeof(buf), "%-6s %10s %10s %10s %10s %10s %8d\n", name, "-", "-", "-", "-", "-", 0);
  } else {
    std::snprintf(buf, sizeof(buf), "%-6s %10.2f %10.2f %10.2f %10.2f %10.2f %8lld\n", name, s.mean * 1e3, s.p50 * 1e3,
                  s.p90 * 1e3, s.p99 * 1e3, s.max * 1e3, static_cast<long long>(s.count));
  }
  return buf;
}

}  // namespace

std::string BenchReport::ToTable(const std::string& title,
                                 const std::vector<std::pair<std::string, std::string>>& config) const {
  std::string o = "============ " + title + " ============\n";
  for (const auto& [k, v] : config) o += Line((k + ":").c_str(), v);
  o += Line("Completed requests:", std::to_string(completed));
  o += Line("Failed requests:", std::to_string(failed));
  if (cut_by_deadline) o += Line("Cut by --duration-s or a signal:", std::to_string(cut_by_deadline));
  if (not_sent) o += Line("Not sent (count/duration reached):", std::to_string(not_sent));
  o += Line("Benchmark duration (s):", Num(duration_s));
  o += Line("Total input tokens:", std::to_string(input_tokens));
  o += Line("Total output tokens:", std::to_string(output_tokens));
  o += Line("Request throughput (req/s):", Num(request_throughput, 3));
  o += Line("Input token throughput (tok/s):", Num(input_throughput));
  o += Line("Output token throughput (tok/s):", Num(output_throughput));
  o += Line("Total token throughput (tok/s):", Num(total_token_throughput));
  if (requests_without_usage) {
    o += Line("Requests without usage (counted chunks):", std::to_string(requests_without_usage));
  }
  char head[256];
  std::snprintf(head, sizeof(head), "%-6s %10s %10s %10s %10s %10s %8s\n", "(ms)", "mean", "p50", "p90", "p99", "max",
                "n");
  o += head;
  o += Row("TTFT", ttft);
  o += Row("TPOT", tpot);
  o += Row("ITL", itl);
  o += Row("E2E", e2e);
  for (const auto& [msg, n] : errors) o += "error x" + std::to_string(n) + ": " + msg + "\n";
  o += std::string(26 + title.size(), '=') + "\n";
  return o;
}

}  // namespace dsv3::bench
