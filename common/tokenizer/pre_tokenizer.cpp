#include "common/tokenizer/pre_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "nlohmann/json.hpp"

namespace dsv3 {
namespace {

constexpr std::string_view kSubsystem = "tokenizer";

// Unicode White_Space (what Oniguruma's \s matches with Unicode encodings).
constexpr char kWhiteSpaceClassBody[] =
    "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"
    "\\x{202F}\\x{205F}\\x{3000}";

// GPT-2's pattern, used when a ByteLevel pre-tokenizer has use_regex = true.
constexpr char kGpt2Pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

enum class Behavior { kIsolated, kRemoved };

std::string EscapeLiteral(std::string_view s) {
  std::string out = "\\Q";
  for (size_t i = 0; i < s.size(); ++i) {
    // \E inside \Q...\E would end the quote early; split it.
    if (s[i] == '\\' && i + 1 < s.size() && s[i + 1] == 'E') {
      out += "\\E\\\\\\Q";
      continue;
    }
    out.push_back(s[i]);
  }
  out += "\\E";
  return out;
}

}  // namespace

// One compiled Split step. Immutable after construction, so one instance serves all threads;
// per-call state (match data) lives on the caller's stack.
class RegexSplit {
 public:
  ~RegexSplit() {
    if (code_ != nullptr) pcre2_code_free(code_);
  }

  static StatusOr<std::unique_ptr<RegexSplit>> Create(const std::string& pcre_pattern,
                                                      Behavior behavior) {
    auto step = std::unique_ptr<RegexSplit>(new RegexSplit());
    step->behavior_ = behavior;
    int error_code = 0;
    PCRE2_SIZE error_offset = 0;
    step->code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pcre_pattern.data()), pcre_pattern.size(),
                                PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
    if (step->code_ == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error_code, message, sizeof(message));
      return InvalidArgument(kSubsystem, absl::StrCat("cannot compile pre-tokenizer regex at offset ",
                                                      error_offset, ": ",
                                                      reinterpret_cast<const char*>(message)));
    }
    // JIT when the platform has it; if this fails pcre2_match() falls back to the
    // interpreter, bounded by the match limit set per call.
    pcre2_jit_compile(step->code_, PCRE2_JIT_COMPLETE);
    return step;
  }

  Status Apply(std::string_view text, pcre2_match_data* md, pcre2_match_context* mctx,
               std::vector<std::string_view>* out) const {
    size_t prev = 0;
    size_t start = 0;
    while (start <= text.size()) {
      int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), start,
                           PCRE2_NO_UTF_CHECK, md, mctx);
      if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
        // Fallback: the interpreter keeps its backtracking state on the heap.
        rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), start,
                         PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, mctx);
      }
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        PCRE2_UCHAR message[256];
        pcre2_get_error_message(rc, message, sizeof(message));
        return absl::ResourceExhaustedError(absl::StrCat(
            "tokenizer: pre-tokenizer regex failed: ", reinterpret_cast<const char*>(message)));
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      const size_t m_begin = ov[0];
      const size_t m_end = ov[1];
      if (m_end == m_begin) {
        // Empty matches split nothing; step over one code point to make progress.
        if (m_end >= text.size()) break;
        start = m_end + 1;
        while (start < text.size() && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) ++start;
        continue;
      }
      if (m_begin > prev) out->push_back(text.substr(prev, m_begin - prev));
      if (behavior_ == Behavior::kIsolated) out->push_back(text.substr(m_begin, m_end - m_begin));
      prev = m_end;
      start = m_end;
    }
    if (prev < text.size()) out->push_back(text.substr(prev));
    return absl::OkStatus();
  }

 private:
  RegexSplit() = default;
  pcre2_code* code_ = nullptr;
  Behavior behavior_ = Behavior::kIsolated;
};

PreTokenizer::~PreTokenizer() = default;

std::string PreTokenizer::TranslatePattern(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 64);
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char e = p[i + 1];
      ++i;
      if (e == 's') {
        if (in_class) {
          out += kWhiteSpaceClassBody;
        } else {
          absl::StrAppend(&out, "[", kWhiteSpaceClassBody, "]");
        }
      } else if (e == 'S' && !in_class) {
        absl::StrAppend(&out, "[^", kWhiteSpaceClassBody, "]");
      } else {
        out.push_back('\\');
        out.push_back(e);
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out.push_back(c);
      // A ']' right after '[' or '[^' is a literal member, not the end of the class.
      if (i + 1 < p.size() && p[i + 1] == '^') out.push_back(p[++i]);
      if (i + 1 < p.size() && p[i + 1] == ']') out.push_back(p[++i]);
      continue;
    }
    if (in_class && c == ']') in_class = false;
    out.push_back(c);
  }
  return out;
}

StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizer::FromJson(const nlohmann::json& config) {
  auto pre = std::unique_ptr<PreTokenizer>(new PreTokenizer());
  if (config.is_null()) return pre;
  std::vector<const nlohmann::json*> items;
  if (config.value("type", "") == "Sequence") {
    if (!config.contains("pretokenizers") || !config["pretokenizers"].is_array()) {
      return InvalidArgument(kSubsystem, "pre_tokenizer Sequence without a pretokenizers array");
    }
    for (const auto& item : config["pretokenizers"]) items.push_back(&item);
  } else {
    items.push_back(&config);
  }
  for (const nlohmann::json* item : items) {
    const std::string type = item->value("type", "");
    if (type == "Split") {
      if (item->value("invert", false)) {
        return Unimplemented(kSubsystem, "Split pre-tokenizer with invert=true");
      }
      const std::string behavior_name = item->value("behavior", "Isolated");
      Behavior behavior;
      if (behavior_name == "Isolated") {
        behavior = Behavior::kIsolated;
      } else if (behavior_name == "Removed") {
        behavior = Behavior::kRemoved;
      } else {
        return Unimplemented(kSubsystem, absl::StrCat("Split behavior ", behavior_name));
      }
      const auto& pattern = item->at("pattern");
      std::string pcre;
      if (pattern.contains("Regex")) {
        pcre = TranslatePattern(pattern["Regex"].get<std::string>());
      } else if (pattern.contains("String")) {
        pcre = EscapeLiteral(pattern["String"].get<std::string>());
      } else {
        return InvalidArgument(kSubsystem, "Split pattern is neither Regex nor String");
      }
      DSV3_ASSIGN_OR_RETURN(auto step, RegexSplit::Create(pcre, behavior));
      pre->steps_.push_back(std::move(step));
    } else if (type == "ByteLevel") {
      // The byte relabelling itself is implicit (BPE runs on raw bytes).
      if (item->value("add_prefix_space", false)) {
        return Unimplemented(kSubsystem, "ByteLevel pre-tokenizer with add_prefix_space=true");
      }
      if (item->value("use_regex", true)) {
        DSV3_ASSIGN_OR_RETURN(auto step,
                              RegexSplit::Create(TranslatePattern(kGpt2Pattern), Behavior::kIsolated));
        pre->steps_.push_back(std::move(step));
      }
    } else {
      return Unimplemented(kSubsystem, absl::StrCat("pre-tokenizer type '", type, "'"));
    }
  }
  return pre;
}

Status PreTokenizer::Split(std::string_view text, std::vector<std::string_view>* pieces) const {
  if (text.empty()) return absl::OkStatus();
  if (steps_.empty()) {
    pieces->push_back(text);
    return absl::OkStatus();
  }
  // Per-call state keeps Split() thread-safe on a shared tokenizer. The JIT stack grows
  // on demand up to 64 MiB (virtual until touched), enough for multi-megabyte single
  // matches such as one huge whitespace run; the match limit bounds the interpreter path.
  struct Resources {
    pcre2_match_context* mctx = pcre2_match_context_create(nullptr);
    pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, nullptr);
    pcre2_match_data* md = nullptr;
    ~Resources() {
      if (md != nullptr) pcre2_match_data_free(md);
      if (stack != nullptr) pcre2_jit_stack_free(stack);
      if (mctx != nullptr) pcre2_match_context_free(mctx);
    }
  } res;
  if (res.mctx == nullptr) return Internal(kSubsystem, "out of memory creating a regex match context");
  if (res.stack != nullptr) pcre2_jit_stack_assign(res.mctx, nullptr, res.stack);
  pcre2_set_match_limit(res.mctx, 100'000'000);
  pcre2_set_heap_limit(res.mctx, 1u << 20);  // KiB: 1 GiB for the interpreter fallback
  res.md = pcre2_match_data_create(4, nullptr);
  if (res.md == nullptr) return Internal(kSubsystem, "out of memory creating regex match data");

  std::vector<std::string_view> current{text};
  std::vector<std::string_view> next;
  for (size_t s = 0; s < steps_.size(); ++s) {
    std::vector<std::string_view>* dst = s + 1 == steps_.size() ? pieces : &next;
    for (std::string_view piece : current) {
      DSV3_RETURN_IF_ERROR(steps_[s]->Apply(piece, res.md, res.mctx, dst));
    }
    if (dst == &next) {
      current.swap(next);
      next.clear();
    }
  }
  return absl::OkStatus();
}

}  // namespace dsv3
