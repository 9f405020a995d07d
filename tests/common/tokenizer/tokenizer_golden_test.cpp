// Every case of ../shared/tokenizer/golden-encode.json: encode ids, decode, decode with
// skip_special_tokens, and the streaming detokenizer agreeing with Decode().
#include <gtest/gtest.h>

#include <memory>

#include "common/tokenizer/bpe_tokenizer.h"
#include "common/tokenizer/incremental_detokenizer.h"
#include "golden_paths.h"
#include "nlohmann/json.hpp"

namespace dsv3 {
namespace {

class TokenizerGoldenTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!testing::HaveTokenizerGoldens()) return;
    auto tok = BpeTokenizer::FromDirectory(testing::TokenizerDir());
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = std::move(*tok).release();
    golden_ = new nlohmann::json(
        nlohmann::json::parse(testing::ReadFileOrEmpty(testing::TokenizerDir() + "/golden-encode.json")));
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    delete golden_;
    tokenizer_ = nullptr;
    golden_ = nullptr;
  }
  static BpeTokenizer* tokenizer_;
  static nlohmann::json* golden_;
};
BpeTokenizer* TokenizerGoldenTest::tokenizer_ = nullptr;
nlohmann::json* TokenizerGoldenTest::golden_ = nullptr;

std::string StreamDecode(const BpeTokenizer& tok, const std::vector<int32_t>& ids, bool skip) {
  IncrementalDetokenizer detok(tok, DecodeOptions{skip});
  std::string out;
  for (int32_t id : ids) {
    auto chunk = detok.Push(id);
    EXPECT_TRUE(chunk.ok()) << chunk.status();
    if (chunk.ok()) out += *chunk;
  }
  return out + detok.Finish();
}

TEST_F(TokenizerGoldenTest, EncodeCases) {
  DSV3_SKIP_WITHOUT_GOLDENS();
  int checked = 0;
  for (const auto& c : (*golden_)["encode_cases"]) {
    const std::string name = c["name"];
    const std::string text = c["text"];
    auto ids = tokenizer_->Encode(text);
    ASSERT_TRUE(ids.ok()) << name << ": " << ids.status();
    EXPECT_EQ(*ids, c["ids"].get<std::vector<int32_t>>()) << name;
    auto decoded = tokenizer_->Decode(*ids);
    ASSERT_TRUE(decoded.ok()) << name;
    EXPECT_EQ(*decoded, c["decoded"].get<std::string>()) << name;
    auto skipped = tokenizer_->Decode(*ids, DecodeOptions{.skip_special_tokens = true});
    ASSERT_TRUE(skipped.ok()) << name;
    EXPECT_EQ(*skipped, c["decoded_skip_special_tokens"].get<std::string>()) << name;
    if (c["roundtrip_exact"].get<bool>()) {
      EXPECT_EQ(*decoded, text) << name;
    }
    EXPECT_EQ(StreamDecode(*tokenizer_, *ids, false), *decoded) << name;
    ++checked;
  }
  EXPECT_GE(checked, 60);
}

TEST_F(TokenizerGoldenTest, DecodeCases) {
  DSV3_SKIP_WITHOUT_GOLDENS();
  int checked = 0;
  for (const auto& c : (*golden_)["decode_cases"]) {
    const std::string name = c["name"];
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    auto decoded = tokenizer_->Decode(ids);
    ASSERT_TRUE(decoded.ok()) << name << ": " << decoded.status();
    EXPECT_EQ(*decoded, c["decoded"].get<std::string>()) << name;
    auto skipped = tokenizer_->Decode(ids, DecodeOptions{.skip_special_tokens = true});
    ASSERT_TRUE(skipped.ok()) << name;
    EXPECT_EQ(*skipped, c["decoded_skip_special_tokens"].get<std::string>()) << name;
    EXPECT_EQ(StreamDecode(*tokenizer_, ids, false), *decoded) << name;
    EXPECT_EQ(StreamDecode(*tokenizer_, ids, true), *skipped) << name;
    ++checked;
  }
  EXPECT_GE(checked, 5);
}

TEST_F(TokenizerGoldenTest, EmptyIdsDecodeToEmptyString) {
  DSV3_SKIP_WITHOUT_GOLDENS();
  auto decoded = tokenizer_->Decode(std::vector<int32_t>{});
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, "");
}

}  // namespace
}  // namespace dsv3
