// dsv3-generate as external checks call it: a real process, JSON on stdout, exit codes.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

namespace {

struct Result {
  int code;
  std::string out;
};

Result RunTool(const std::string& args) {
  const std::string cmd = std::string(DSV3_BINARY_DIR) + "/tools/generate/dsv3-generate " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int st = pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

std::string Oracle() {
  const char* env = std::getenv("DSV3_SHARED_DIR");
  std::string d = std::string(env && *env ? env : DSV3_SHARED_DIR) + "/oracle/tiny-fp8";
  return std::filesystem::is_directory(d) ? d : "";
}

TEST(GenerateCli, JsonGreedyMatchesOracleGoldens) {
  const std::string dir = Oracle();
  if (dir.empty()) GTEST_SKIP() << "../shared/oracle/tiny-fp8 not found (set DSV3_SHARED_DIR): skipped";
  std::ifstream in(dir + "/golden.json");
  auto golden = nlohmann::json::parse(in);
  const auto& p = golden["prompts"][2];  // len17
  std::string ids;
  for (const auto& t : p["tokens"]) ids += (ids.empty() ? "" : ",") + std::to_string(t.get<int64_t>());
  Result r = RunTool("--model " + dir + " --prompt-ids " + ids + " --max-new-tokens 24 --top-logprobs 5 --json --threads 2");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto line = r.out.substr(r.out.rfind("\n{") + 1);
  auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j["generated_ids"], p["greedy"]["tokens"]);
  ASSERT_EQ(j["steps"].size(), 24u);
  EXPECT_EQ(j["steps"][0]["top_logprobs"].size(), 5u);
  EXPECT_NEAR(j["steps"][0]["top_logprobs"][0]["logprob"].get<double>(),
              p["greedy"]["steps"][0]["top10_logprobs"][0].get<double>(), 1e-3);
  EXPECT_GT(j["decode_tokens_per_s"].get<double>(), 0.0);
  EXPECT_GT(j["decode_weight_bytes_per_token"].get<double>(), 0.0);
}

TEST(GenerateCli, SeededSamplingIsReproducible) {
  const std::string dir = Oracle();
  if (dir.empty()) GTEST_SKIP() << "../shared/oracle/tiny-fp8 not found: skipped";
  const std::string args = "--model " + dir + " --prompt-ids 0,5,6 --max-new-tokens 12 --temperature 0.8 --top-p 0.95 --json ";
  Result a = RunTool(args + "--seed 7"), b = RunTool(args + "--seed 7"), c = RunTool(args + "--seed 8");
  ASSERT_EQ(a.code, 0) << a.out;
  auto ids = [](const std::string& s) { return nlohmann::json::parse(s.substr(s.rfind("\n{") + 1))["generated_ids"]; };
  EXPECT_EQ(ids(a.out), ids(b.out));
  EXPECT_NE(ids(a.out), ids(c.out));
}

TEST(GenerateCli, BadInputsGetClearErrors) {
  struct Case {
    std::string args;
    std::string expect;
  };
  const std::string dir = Oracle();
  std::vector<Case> cases = {{"--prompt-ids 1,2", "--model"},
                             {"--model /nonexistent --prompt-ids 1", "not a directory"},
                             {"--model /tmp --prompt-ids 1,x", "comma-separated"},
                             {"--model /tmp --prompt-ids 1 --temperature -1", "--temperature"},
                             {"--model /tmp --prompt-ids 1 --bogus 3", "unknown option"},
                             {"--model /tmp --prompt-ids 1 --prompt hi", "exactly one of"},
                             {"--model /tmp --prompt ''", "must not be empty"}};
  if (!dir.empty()) {
    cases.push_back({"--model " + dir + " --prompt-ids 0,129280", "outside the vocabulary"});
    cases.push_back({"--model " + dir + " --prompt-ids 0 --max-new-tokens 200000", "max_position_embeddings"});
    cases.push_back({"--model " + dir + " --prompt hello", "has no tokenizer.json"});
  }
  for (const auto& c : cases) {
    Result r = RunTool(c.args);
    EXPECT_NE(r.code, 0) << c.args;
    EXPECT_NE(r.out.find(c.expect), std::string::npos) << c.args << " -> " << r.out;
  }
}

// --prompt renders the checkpoint's chat template (here the real DeepSeek-V3 tokenizer
// files from ../shared/tokenizer) and generates from those ids.
TEST(GenerateCli, PromptGoesThroughTheChatTemplate) {
  const std::string dir = Oracle();
  const std::string tok = std::filesystem::path(dir).parent_path().parent_path().string() + "/tokenizer";
  if (dir.empty() || !std::filesystem::exists(tok + "/tokenizer.json")) {
    GTEST_SKIP() << "../shared/oracle or ../shared/tokenizer not found: skipped";
  }
  Result r = RunTool("--model " + dir + " --tokenizer " + tok + " --prompt 'Write a haiku about the sea.' --max-new-tokens 6 --json");
  ASSERT_EQ(r.code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out.substr(r.out.rfind("\n{") + 1));
  auto ids = j["prompt_ids"].get<std::vector<int64_t>>();
  ASSERT_GE(ids.size(), 4u);
  EXPECT_EQ(ids.front(), 0);        // <｜begin▁of▁sentence｜> from the template
  EXPECT_EQ(ids[1], 128803);        // <｜User｜>
  EXPECT_EQ(ids.back(), 128804);    // <｜Assistant｜>
  EXPECT_TRUE(j.contains("text"));
  std::string csv;
  for (auto id : ids) csv += (csv.empty() ? "" : ",") + std::to_string(id);
  Result r2 = RunTool("--model " + dir + " --prompt-ids " + csv + " --max-new-tokens 6 --json");
  ASSERT_EQ(r2.code, 0) << r2.out;
  EXPECT_EQ(nlohmann::json::parse(r2.out.substr(r2.out.rfind("\n{") + 1))["generated_ids"], j["generated_ids"]);
}

TEST(GenerateCli, InteractiveChatLoop) {
  const std::string dir = Oracle();
  const std::string tok = std::filesystem::path(dir).parent_path().parent_path().string() + "/tokenizer";
  if (dir.empty() || !std::filesystem::exists(tok + "/tokenizer.json")) GTEST_SKIP() << "../shared not found: skipped";
  Result p = RunTool("--model " + dir + " --tokenizer " + tok + " --interactive --max-new-tokens 5 < /dev/null");
  EXPECT_EQ(p.code, 0) << p.out;
  const std::string cmd = "printf 'hello\\n/clear\\nagain\\n/exit\\n' | " + std::string(DSV3_BINARY_DIR) +
                          "/tools/generate/dsv3-generate --model " + dir + " --tokenizer " + tok +
                          " --interactive --max-new-tokens 5 2>&1";
  FILE* f = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  EXPECT_EQ(pclose(f), 0) << out;
  size_t turns = 0;
  for (size_t pos = 0; (pos = out.find("decode", pos)) != std::string::npos; ++pos) ++turns;
  EXPECT_EQ(turns, 2u) << out;  // two questions answered, /clear and /exit handled
}

}  // namespace
