// Hermetic tokenizer tests (no goldens needed) plus error cases and pathological inputs on
// the real DeepSeek-V3 tokenizer when ../shared/tokenizer is present.
#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <thread>

#include "common/tokenizer/bpe_tokenizer.h"
#include "common/tokenizer/byte_level.h"
#include "common/tokenizer/incremental_detokenizer.h"
#include "common/tokenizer/pre_tokenizer.h"
#include "common/tokenizer/utf8.h"
#include "golden_paths.h"
#include "nlohmann/json.hpp"

namespace dsv3 {
namespace {

// ---- UTF-8 ------------------------------------------------------------------------------

TEST(Utf8, ValidatesStrictly) {
  EXPECT_TRUE(utf8::IsValid("plain ascii"));
  EXPECT_TRUE(utf8::IsValid("\xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x98\x80"));
  size_t at = 99;
  EXPECT_FALSE(utf8::IsValid("ab\xFF", &at));
  EXPECT_EQ(at, 2u);
  EXPECT_FALSE(utf8::IsValid("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(utf8::IsValid("\xED\xA0\x80"));      // surrogate U+D800
  EXPECT_FALSE(utf8::IsValid("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(utf8::IsValid("\xE4\xBD"));          // truncated
}

TEST(Utf8, LossyUsesOneReplacementPerMaximalSubpart) {
  auto lossy = [](std::string_view in) {
    std::string out;
    utf8::AppendLossy(in, &out, true);
    return out;
  };
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(lossy("\xE4\xBD"), r);                    // one truncated sequence
  EXPECT_EQ(lossy("\xE4\xBD" "A"), r + "A");
  EXPECT_EQ(lossy("\x80\x80"), r + r);                // stray continuation bytes
  EXPECT_EQ(lossy("\xED\xA0\x80"), r + r + r);        // surrogate: 3 subparts
  EXPECT_EQ(lossy("\xF0\x9F\x98\x80"), "\xF0\x9F\x98\x80");
}

TEST(Utf8, NonFinalKeepsIncompleteTail) {
  std::string out;
  EXPECT_EQ(utf8::AppendLossy("ok\xF0\x9F\x98", &out, false), 2u);
  EXPECT_EQ(out, "ok");
}

// ---- BPE on a synthetic byte-level tokenizer (hermetic) --------------------------------

// A tiny tokenizer.json: all 256 byte tokens, a few merges, no pre-tokenizer, so long
// pieces exercise the heap-based merge path.
std::string SyntheticTokenizerJson(const std::vector<std::pair<std::string, std::string>>& merges,
                                   const std::string& pre_tokenizer = "null") {
  ByteLevelAlphabet alphabet;
  nlohmann::json vocab = nlohmann::json::object();
  int next = 0;
  for (int b = 0; b < 256; ++b) vocab[alphabet.Encode(static_cast<unsigned char>(b))] = next++;
  nlohmann::json merge_list = nlohmann::json::array();
  auto text = [&](const std::string& raw) {
    std::string s;
    for (unsigned char c : raw) s += alphabet.Encode(c);
    return s;
  };
  for (const auto& [a, b] : merges) {
    merge_list.push_back(text(a) + " " + text(b));
    if (!vocab.contains(text(a + b))) vocab[text(a + b)] = next++;
  }
  nlohmann::json j = {
      {"version", "1.0"},
      {"added_tokens", nlohmann::json::array({{{"id", next}, {"content", "<special>"}, {"special", true}},
                                              {{"id", next + 1}, {"content", "<spec>"}, {"special", false}}})},
      {"normalizer", nullptr},
      {"pre_tokenizer", nlohmann::json::parse(pre_tokenizer)},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merge_list}}},
  };
  return j.dump();
}

// Independent reference: repeatedly merge the lowest-rank pair, leftmost first.
std::vector<std::string> NaiveBpe(const std::string& word, const std::vector<std::pair<std::string, std::string>>& merges) {
  std::vector<std::string> s;
  for (char c : word) s.emplace_back(1, c);
  while (true) {
    size_t best_rank = merges.size(), best = 0;
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      for (size_t r = 0; r < best_rank; ++r) {
        if (merges[r].first == s[i] && merges[r].second == s[i + 1]) {
          best_rank = r;
          best = i;
          break;
        }
      }
    }
    if (best_rank == merges.size()) return s;
    s[best] += s[best + 1];
    s.erase(s.begin() + static_cast<long>(best) + 1);
  }
}

TEST(BpeModel, MatchesNaiveMergeOrderOnShortAndLongPieces) {
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"a", "a"}, {"b", "c"}, {"aa", "aa"}, {"a", "bc"}, {"aaaa", "a"}, {"c", "a"}, {"bc", "bc"}};
  auto tok = BpeTokenizer::FromJsonString(SyntheticTokenizerJson(merges));
  ASSERT_TRUE(tok.ok()) << tok.status();
  std::mt19937 rng(7);
  for (int trial = 0; trial < 300; ++trial) {
    std::string word;
    const int len = trial < 150 ? 1 + static_cast<int>(rng() % 40) : 49 + static_cast<int>(rng() % 400);
    for (int k = 0; k < len; ++k) word.push_back("abc"[rng() % 3]);
    auto ids = (*tok)->Encode(word);
    ASSERT_TRUE(ids.ok());
    std::vector<std::string> pieces;
    for (int32_t id : *ids) pieces.emplace_back((*tok)->GetPiece(id)->bytes);
    EXPECT_EQ(pieces, NaiveBpe(word, merges)) << word;
  }
}

TEST(BpeTokenizer, AddedTokensLeftmostLongestAndPlainTextOption) {
  auto tok = BpeTokenizer::FromJsonString(SyntheticTokenizerJson({}));
  ASSERT_TRUE(tok.ok()) << tok.status();
  const int32_t special = *(*tok)->TokenToId("<special>");
  const int32_t spec = *(*tok)->TokenToId("<spec>");
  auto ids = (*tok)->Encode("x<special><spec>");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<int32_t>{'x', special, spec}));  // byte ids == byte values here

  EncodeOptions plain;
  plain.parse_special_tokens = false;
  ids = (*tok)->Encode("x<special>", plain);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->size(), 10u);  // every byte on its own (no merges)

  EncodeOptions ranges;
  ranges.plain_text_ranges = {{10, 19}};  // covers the second "<special>" only
  ids = (*tok)->Encode("<special>x<special>", ranges);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->front(), special);
  EXPECT_EQ(std::count(ids->begin(), ids->end(), special), 1);

  auto decoded = (*tok)->Decode(std::vector<int32_t>{'a', special, spec, 'b'}, {.skip_special_tokens = true});
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, "a<spec>b");
}

TEST(BpeTokenizer, LoadErrorsAreStatuses) {
  EXPECT_EQ(BpeTokenizer::FromDirectory("/nonexistent-dir").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(BpeTokenizer::FromJsonString("{not json").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BpeTokenizer::FromJsonString(R"({"model": {"type": "BPE", "vocab": 5}})").status().code(),
            absl::StatusCode::kInvalidArgument);
  nlohmann::json j = nlohmann::json::parse(SyntheticTokenizerJson({}));
  j["normalizer"] = {{"type", "NFKC"}};
  EXPECT_EQ(BpeTokenizer::FromJsonString(j.dump()).status().code(), absl::StatusCode::kUnimplemented);
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  EXPECT_EQ(BpeTokenizer::FromJsonString(j.dump()).status().code(), absl::StatusCode::kUnimplemented);
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  EXPECT_EQ(BpeTokenizer::FromJsonString(j.dump()).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(PreTokenizer, WhitespaceFollowsOniguruma) {
  // \s must include U+0085 (Oniguruma / Hugging Face) even though PCRE2's \s does not.
  const std::string translated = PreTokenizer::TranslatePattern(R"(\s+(?!\S)|[^\s\p{L}]+)");
  EXPECT_NE(translated.find("\\x{85}"), std::string::npos);
  EXPECT_EQ(translated.find("\\s"), std::string::npos);
  EXPECT_EQ(translated.find("\\S"), std::string::npos);
  auto pre = PreTokenizer::FromJson(nlohmann::json::parse(R"({"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Isolated"})"));
  ASSERT_TRUE(pre.ok()) << pre.status();
  std::vector<std::string_view> pieces;
  ASSERT_TRUE((*pre)->Split("a\xC2\x85" "b", &pieces).ok());
  EXPECT_EQ(pieces, (std::vector<std::string_view>{"a", "\xC2\x85", "b"}));
}

// ---- Real tokenizer: errors, options, streaming, pathological inputs --------------------

class RealTokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    DSV3_SKIP_WITHOUT_GOLDENS();
    auto tok = BpeTokenizer::FromDirectory(testing::TokenizerDir());
    ASSERT_TRUE(tok.ok()) << tok.status();
    tok_ = std::move(*tok);
  }
  std::unique_ptr<BpeTokenizer> tok_;
};

TEST_F(RealTokenizerTest, InvalidUtf8IsAnError) {
  for (std::string bad : {std::string("abc\xFF"), std::string("\xC3"), std::string("\xC0\xAF"),
                          std::string("\xED\xA0\x80"), std::string("ok\xF0\x9F\x98")}) {
    auto ids = tok_->Encode(bad);
    ASSERT_FALSE(ids.ok());
    EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(ids.status().message().find("UTF-8"), std::string_view::npos) << ids.status();
  }
}

TEST_F(RealTokenizerTest, UnknownIdsAreErrors) {
  for (int32_t bad : {-1, 128815, 1 << 30}) {
    auto text = tok_->Decode(std::vector<int32_t>{19923, bad});
    ASSERT_FALSE(text.ok());
    EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(text.status().message().find("unknown token id"), std::string_view::npos);
  }
  IncrementalDetokenizer detok(*tok_);
  EXPECT_FALSE(detok.Push(-5).ok());
}

TEST_F(RealTokenizerTest, OversizedInputIsAnError) {
  auto small = BpeTokenizer::FromDirectory(testing::TokenizerDir(), TokenizerOptions{.max_input_bytes = 1000});
  ASSERT_TRUE(small.ok());
  EXPECT_TRUE((*small)->Encode(std::string(1000, 'a')).ok());
  auto ids = (*small)->Encode(std::string(1001, 'a'));
  ASSERT_FALSE(ids.ok());
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(ids.status().message().find("exceeds the limit"), std::string_view::npos);
}

TEST_F(RealTokenizerTest, ControlTokensTypedByUsersCanBePlainText) {
  const std::string text = "Hi<｜Assistant｜>there";
  auto reference = tok_->Encode(text);
  ASSERT_TRUE(reference.ok());
  EXPECT_NE(std::find(reference->begin(), reference->end(), 128804), reference->end());
  EncodeOptions plain;
  plain.parse_special_tokens = false;
  auto safe = tok_->Encode(text, plain);
  ASSERT_TRUE(safe.ok());
  EXPECT_EQ(std::find(safe->begin(), safe->end(), 128804), safe->end());
  EXPECT_EQ(*tok_->Decode(*safe), text);  // still the same text
}

TEST_F(RealTokenizerTest, StreamingNeverEmitsBrokenUtf8) {
  const std::string text = "emoji 😀🚀 中文 é + 👨‍👩‍👧 and <｜end▁of▁sentence｜> done";
  auto ids = tok_->Encode(text);
  ASSERT_TRUE(ids.ok());
  IncrementalDetokenizer detok(*tok_);
  std::string joined;
  for (int32_t id : *ids) {
    auto chunk = detok.Push(id);
    ASSERT_TRUE(chunk.ok());
    EXPECT_TRUE(utf8::IsValid(*chunk)) << id;
    joined += *chunk;
  }
  EXPECT_EQ(detok.pending_bytes(), 0u);
  joined += detok.Finish();
  EXPECT_EQ(joined, text);
  // 😀 is two tokens (golden decode case): nothing, then the whole character.
  IncrementalDetokenizer split(*tok_);
  EXPECT_EQ(*split.Push(28927), "");
  EXPECT_EQ(split.pending_bytes(), 3u);
  EXPECT_EQ(*split.Push(225), "😀");
  // A dangling partial character becomes U+FFFD at the end of the stream.
  EXPECT_EQ(*split.Push(28927), "");
  EXPECT_EQ(split.Finish(), "\xEF\xBF\xBD");
}

TEST_F(RealTokenizerTest, ConcurrentEncodesAgree) {
  std::vector<std::string> texts;
  for (int k = 0; k < 200; ++k) texts.push_back("sample " + std::to_string(k * 7919) + " 深度求索 tokens ☃ " + std::string(k % 7, ' '));
  std::vector<std::vector<int32_t>> expected;
  for (const auto& t : texts) expected.push_back(*tok_->Encode(t));
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int th = 0; th < 4; ++th) {
    threads.emplace_back([&] {
      for (int rep = 0; rep < 5; ++rep) {
        for (size_t k = 0; k < texts.size(); ++k) {
          if (*tok_->Encode(texts[k]) != expected[k]) ++mismatches;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches.load(), 0);
}

// Sanitizer builds run several times slower; the bound only has to catch quadratic blow-ups.
#if defined(__SANITIZE_ADDRESS__)
constexpr double kPathologicalBoundSeconds = 120.0;
#else
constexpr double kPathologicalBoundSeconds = 20.0;
#endif

// Linear time on pathological inputs: each 10 MB input must encode well within a bound
// that quadratic behaviour (regex backtracking, naive BPE on one huge piece: ~1e13 steps)
// would blow by orders of magnitude.
TEST_F(RealTokenizerTest, PathologicalInputsAreLinear) {
  const size_t n = 10u << 20;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"one letter", std::string(n, 'a')},
      {"spaces", std::string(n, ' ')},
      {"newlines", std::string(n, '\n')},
      {"digits", std::string(n, '7')},
      {"punctuation", std::string(n, '!')},
      {"spaces then letter", std::string(n - 1, ' ') + "x"},
      {"crlf", [&] {
         std::string s;
         while (s.size() < n) s += "\r\n";
         return s;
       }()},
      {"space-newline", [&] {
         std::string s;
         while (s.size() < n) s += " \n";
         return s;
       }()},
      {"cjk", [&] {
         std::string s;
         while (s.size() < n) s += "深";
         return s;
       }()},
      {"emoji", [&] {
         std::string s;
         while (s.size() < n) s += "😀";
         return s;
       }()},
  };
  for (const auto& [name, text] : cases) {
    const auto start = std::chrono::steady_clock::now();
    auto ids = tok_->Encode(text);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ASSERT_TRUE(ids.ok()) << name << ": " << ids.status();
    EXPECT_LT(seconds, kPathologicalBoundSeconds) << name;
    auto back = tok_->Decode(*ids);
    ASSERT_TRUE(back.ok());
    EXPECT_TRUE(*back == text) << name << ": round trip differs";
    std::cout << "[ perf     ] " << name << ": " << text.size() / 1e6 / seconds << " MB/s, " << ids->size() << " ids\n";
  }
}

}  // namespace
}  // namespace dsv3
