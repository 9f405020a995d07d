// JsonAutomaton against nlohmann's parser (documents, their prefixes, random byte edits),
// fed whole and split at every byte; JsonConstraint's mask driving SequenceSampler over a
// small JSON-ish vocabulary: every seeded run ends in a document nlohmann accepts.
#include <gtest/gtest.h>

#include <random>
#include <cctype>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/sampling/json_automaton.h"
#include "common/sampling/json_constraint.h"
#include "common/sampling/sequence_sampler.h"

namespace dsv3 {
namespace {

// nlohmann's verdict for json_object mode: one object, nothing but whitespace around it.
bool IsJsonObject(const std::string& s) {
  try {
    [[maybe_unused]] const auto parsed = nlohmann::json::parse(s);
  } catch (const nlohmann::json::parse_error&) {
    return false;
  } catch (const nlohmann::json::out_of_range&) {
    // e.g. 1e809: a number a double cannot hold stops nlohmann before the rest is checked;
    // the grammar does not care, so judge the text with every exponent set to 0.
    std::string tamed;
    for (size_t i = 0; i < s.size();) {
      tamed += s[i];
      if ((s[i] == 'e' || s[i] == 'E') && i > 0 && std::isdigit(static_cast<unsigned char>(s[i - 1]))) {
        size_t j = i + 1;
        if (j < s.size() && (s[j] == '+' || s[j] == '-')) tamed += s[j++];
        if (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) {
          tamed += '0';
          while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
        }
        i = j;
        continue;
      }
      ++i;
    }
    if (tamed == s) return false;
    return IsJsonObject(tamed);
  }
  const size_t i = s.find_first_not_of(" \t\n\r");
  return i != std::string::npos && s[i] == '{';
}

// Feeds byte by byte; returns how many bytes were accepted.
size_t Accepted(const std::string& s, JsonAutomaton* a) {
  for (size_t i = 0; i < s.size(); ++i) {
    if (!a->Feed(std::string_view(s).substr(i, 1))) return i;
  }
  return s.size();
}

const std::vector<std::string>& Documents() {
  static const std::vector<std::string> docs = {
      "{}",
      "{\"a\" :\n  1 }",
      "{\"a\": [1, -2, 3.5, -0.25e+10, 0, 1E5, 2e-3], \"b\": {\"c\": null, \"d\": [true, false]}}",
      "{\"\": \"\", \"k\": []}",
      "{\"esc\": \"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t \\u00e9 \\uD83D\\uDE00\"}",
      "{\"utf8\": \"h\xc3\xa9llo \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80 \xed\x9f\xbf \xf4\x8f\xbf\xbf\"}",
      "{\"deep\": [[[[{\"x\": [[]]}]]]]}",
      "{\"n\": [0.0, 10, 1.0e0, -0]}",
  };
  return docs;
}

TEST(JsonAutomaton, AcceptsDocumentsAndEveryPrefix) {
  for (const auto& doc : Documents()) {
    SCOPED_TRACE(doc);
    ASSERT_TRUE(IsJsonObject(doc)) << "test data";
    JsonAutomaton a;
    ASSERT_EQ(Accepted(doc, &a), doc.size());
    EXPECT_TRUE(a.done());
    // Any split into tokens gives the same verdict.
    for (size_t cut = 0; cut <= doc.size(); ++cut) {
      JsonAutomaton b;
      ASSERT_TRUE(b.Feed(doc.substr(0, cut)));
      ASSERT_TRUE(b.Feed(doc.substr(cut)));
    }
  }
}

TEST(JsonAutomaton, RejectsAtTheFirstBadByte) {
  struct Case {
    std::string text;
    size_t accepted;  // bytes accepted before the bad one
  };
  const std::vector<Case> cases = {
      {"[1]", 0},                      // top level must be an object
      {"\"s\"", 0},
      {"{1:2}", 1},                    // keys are strings
      {"{\"a\" 1}", 5},                // missing colon
      {"{\"a\":01}", 6},               // leading zero
      {"{\"a\":1.}", 7},               // digit after the dot
      {"{\"a\":-}", 6},
      {"{\"a\":1e}", 7},
      {"{\"a\":tru}", 8},
      {"{\"a\":nul1}", 8},
      {"{\"a\":[1,]}", 8},             // trailing comma
      {"{\"a\":1,}", 7},
      {"{\"a\":\"\x01\"}", 6},        // control character in a string
      {"{\"a\":\"\\x\"}", 7},          // bad escape
      {"{\"a\":\"\\u12G4\"}", 10},
      {"{\"a\":\"\\uDC00\"}", 11},     // lone low surrogate
      {"{\"a\":\"\\uD800x\"}", 12},    // high surrogate without its pair
      {"{\"a\":\"\xc0\xaf\"}", 6},     // overlong
      {"{\"a\":\"\xed\xa0\x80\"}", 7}, // UTF-8 surrogate
      {"{\"a\":\"\xf4\x90\x80\x80\"}", 7},  // above U+10FFFF
      {"{\"a\":\"\xe4\xbd\"}", 8},     // truncated sequence
      {"{}{", 2},                      // nothing after the object
      {"{]", 1},
      {"{\"a\":[}", 6},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    JsonAutomaton a;
    EXPECT_EQ(Accepted(c.text, &a), c.accepted);
    EXPECT_FALSE(IsJsonObject(c.text));
  }
}

// Valid JSON that a model must not produce: padding before the object, whitespace runs
// beyond 32 bytes (outside strings).
TEST(JsonAutomaton, RefusesPaddingThatJsonAllows) {
  JsonAutomaton a;
  EXPECT_EQ(Accepted(" {}", &a), 0u);
  JsonAutomaton b;
  EXPECT_EQ(Accepted("{\"a\":" + std::string(33, ' ') + "1}", &b), 5u + 32u);
  JsonAutomaton c;
  const std::string spaced = "{\"a\":" + std::string(32, ' ') + "\"" + std::string(100, ' ') + "\"}";
  EXPECT_EQ(Accepted(spaced, &c), spaced.size()) << "spaces inside strings are content";
  EXPECT_TRUE(c.done());
}

TEST(JsonAutomaton, NestingIsCapped) {
  std::string deep = "{\"a\":";
  for (int i = 1; i < JsonAutomaton::kMaxDepth; ++i) deep += "[";
  JsonAutomaton a;
  EXPECT_TRUE(a.Feed(deep));
  EXPECT_FALSE(a.Feed("["));
}

// Random single-byte edits of valid documents: accepted in full and done exactly when
// nlohmann accepts the text as one object (modulo trailing whitespace, which the automaton
// refuses so that a model cannot pad forever).
TEST(JsonAutomaton, AgreesWithNlohmannOnRandomEdits) {
  std::mt19937_64 rng(7);
  const std::string alphabet = "{}[]\":,0123456789.-+eEtrufalsn \\\x01\xc3\xa9\xed\xa0";
  int agreements = 0;
  for (int round = 0; round < 20000; ++round) {
    std::string s = Documents()[rng() % Documents().size()];
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % (s.size() + 1);
      const char c = alphabet[rng() % alphabet.size()];
      switch (rng() % 3) {
        case 0: s.insert(s.begin() + static_cast<long>(pos), c); break;
        case 1: if (pos < s.size()) s.erase(pos, 1); break;
        default: if (pos < s.size()) s[pos] = c; break;
      }
    }
    // Leading and trailing whitespace are refused on purpose (a model must not pad).
    while (!s.empty() && (s.back() == ' ' || s.back() == '\n')) s.pop_back();
    while (!s.empty() && (s.front() == ' ' || s.front() == '\n')) s.erase(0, 1);
    JsonAutomaton a;
    const bool whole = Accepted(s, &a) == s.size() && a.done();
    ASSERT_EQ(whole, IsJsonObject(s)) << "text: " << s;
    ++agreements;
  }
  EXPECT_EQ(agreements, 20000);
}

TEST(JsonAutomaton, SerializeRestoreContinues) {
  const std::string doc = Documents()[4];
  for (size_t cut = 0; cut <= doc.size(); ++cut) {
    JsonAutomaton a;
    ASSERT_TRUE(a.Feed(doc.substr(0, cut)));
    JsonAutomaton b;
    ASSERT_TRUE(b.Restore(a.Serialize()));
    EXPECT_TRUE(b.Feed(doc.substr(cut)));
    EXPECT_TRUE(b.done());
  }
  JsonAutomaton c;
  EXPECT_FALSE(c.Restore("garbage"));
}

// A small vocabulary of JSON-ish pieces; id 0 is EOS, id 1 a "special" token (no bytes).
std::shared_ptr<const TokenBytes> SmallVocab() {
  auto v = std::make_shared<TokenBytes>();
  v->bytes = {"", "", "{", "}", "[", "]", "\"", "\":", ",", ":", " ", "a", "key", "\\n", "\\", "u", "00e9",
              "1", "-", ".", "5e", "+3", "true", "fal", "se", "null", "{\"", "\"}", "]}", "\xc3", "\xa9",
              "x\"", "\n", " a", " \"k\"", " }", " 1", " :"};
  v->eos_token_id = 0;
  return v;
}

TEST(JsonConstraint, MaskedSamplingAlwaysYieldsAnObject) {
  auto vocab = SmallVocab();
  const int64_t V = static_cast<int64_t>(vocab->bytes.size());
  std::mt19937_64 rng(3);
  std::normal_distribution<float> noise(0.0f, 2.0f);
  int complete = 0;
  for (uint64_t seed = 0; seed < 300; ++seed) {
    SamplingConfig cfg;
    cfg.temperature = 1.0f;
    cfg.seed = seed;
    cfg.json_object = true;
    cfg.logit_bias = {{3, 1.5f}, {0, 3.0f}};  // lean towards closing and stopping
    SequenceSampler sampler(cfg, V, {}, seed, 0);
    JsonConstraint json(vocab);
    std::vector<uint8_t> allowed;
    std::vector<float> logits(static_cast<size_t>(V));
    std::string text;
    bool stopped = false;
    for (int step = 0; step < 200 && !stopped; ++step) {
      for (auto& l : logits) l = noise(rng);
      json.Mask(&allowed);
      ASSERT_EQ(allowed[1], 0) << "special tokens never";
      ASSERT_EQ(allowed[0], json.done() ? 1 : 0) << "EOS exactly when the object is complete";
      const SampledToken t = sampler.Sample(logits.data(), nullptr, &allowed);
      ASSERT_EQ(allowed[static_cast<size_t>(t.id)], 1) << "sampled a masked token";
      ASSERT_TRUE(json.Accept(t.id));
      sampler.Accept(t.id);
      if (t.id == 0) stopped = true;
      else text += vocab->bytes[static_cast<size_t>(t.id)];
    }
    if (stopped) {
      ++complete;
      EXPECT_TRUE(IsJsonObject(text)) << text;
    }
  }
  EXPECT_GT(complete, 200) << "most runs finish inside 200 tokens with this bias";
}

// The fast paths (IndexForJson's string table, the first-byte and after-space tables) give
// exactly what feeding each token gives, in every state a seeded walk reaches.
TEST(JsonConstraint, IndexedMaskEqualsSimulatedMask) {
  auto plain = SmallVocab();
  auto indexed = std::make_shared<TokenBytes>(*plain);
  IndexForJson(indexed.get());
  EXPECT_EQ(indexed->string_plain[11], 1) << "'a' is plain string content";
  EXPECT_EQ(indexed->string_plain[6], 0) << "'\"' is not";
  EXPECT_EQ(indexed->string_plain[29], 0) << "a lone UTF-8 lead byte is not";
  std::mt19937_64 rng(5);
  int in_string = 0;
  for (int run = 0; run < 200; ++run) {
    JsonConstraint a(plain), b(indexed);
    std::vector<uint8_t> ma, mb;
    for (int step = 0; step < 60 && !a.done(); ++step) {
      a.Mask(&ma);
      b.Mask(&mb);
      ASSERT_EQ(ma, mb) << "run " << run << " step " << step;
      for (size_t id = 0; id < ma.size(); ++id) {  // against feeding each token for real
        JsonConstraint probe = a;
        ASSERT_EQ(ma[id], probe.Accept(static_cast<int64_t>(id)) ? 1 : 0) << "token " << id << " step " << step;
      }
      std::vector<int64_t> ok;
      for (size_t id = 0; id < ma.size(); ++id) {
        if (ma[id]) ok.push_back(static_cast<int64_t>(id));
      }
      ASSERT_FALSE(ok.empty());
      const int64_t pick = ok[rng() % ok.size()];
      ASSERT_TRUE(a.Accept(pick));
      ASSERT_TRUE(b.Accept(pick));
      in_string += a.in_plain_string() ? 1 : 0;
    }
  }
  EXPECT_GT(in_string, 100) << "the walk spends time inside strings";
}

TEST(JsonConstraint, AcceptRefusesWhatTheMaskForbids) {
  JsonConstraint json(SmallVocab());
  EXPECT_FALSE(json.Accept(3));   // '}' first
  EXPECT_FALSE(json.Accept(0));   // EOS before the object
  EXPECT_TRUE(json.Accept(26));   // {"
  EXPECT_TRUE(json.Accept(7));    // ":
  EXPECT_TRUE(json.Accept(17));   // 1
  EXPECT_TRUE(json.Accept(3));    // }
  EXPECT_TRUE(json.done());
  EXPECT_FALSE(json.Accept(10));  // nothing after it
  EXPECT_TRUE(json.Accept(0));
}

}  // namespace
}  // namespace dsv3
