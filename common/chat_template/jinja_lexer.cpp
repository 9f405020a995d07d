#include "common/chat_template/jinja_lexer.h"

#include <cctype>

#include "common/chat_template/jinja_value.h"
#include "common/tokenizer/utf8.h"

namespace dsv3::jinja {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

[[noreturn]] void Fail(size_t line, const std::string& msg) {
  throw JinjaError("template line " + std::to_string(line) + ": " + msg);
}

class Lexer {
 public:
  explicit Lexer(std::string_view src) : src_(src) {
    // Jinja2's default keep_trailing_newline=False drops one trailing newline.
    if (!src_.empty() && src_.back() == '\n') {
      src_.remove_suffix(1);
      if (!src_.empty() && src_.back() == '\r') src_.remove_suffix(1);
    }
  }

  std::vector<Token> Run() {
    while (pos_ < src_.size()) {
      const size_t open = FindTagOpen(pos_);
      if (open == std::string_view::npos) {
        EmitText(src_.substr(pos_));
        pos_ = src_.size();
        break;
      }
      const char kind = src_[open + 1];  // '{', '%' or '#'
      const bool strip_before = open + 2 < src_.size() && src_[open + 2] == '-';
      const bool keep_before = open + 2 < src_.size() && src_[open + 2] == '+';
      std::string_view text = src_.substr(pos_, open - pos_);
      if (strip_before) {
        while (!text.empty() && IsSpace(text.back())) text.remove_suffix(1);
      } else if (kind != '{' && !keep_before) {
        // lstrip_blocks: spaces/tabs between the line start and a block/comment tag go.
        size_t k = text.size();
        while (k > 0 && (text[k - 1] == ' ' || text[k - 1] == '\t')) --k;
        const bool at_line_start = k == 0 ? (open - text.size() == 0 || src_[open - text.size() - 1] == '\n')
                                          : text[k - 1] == '\n';
        if (at_line_start) text = text.substr(0, k);
      }
      EmitText(text);
      pos_ = open + 2 + ((strip_before || keep_before) ? 1 : 0);
      if (kind == '#') {
        LexComment();
      } else {
        LexTag(kind);
      }
    }
    tokens_.push_back({TokenType::kEnd, "", line_});
    return std::move(tokens_);
  }

 private:
  size_t FindTagOpen(size_t from) const {
    for (size_t k = from; k + 1 < src_.size(); ++k) {
      if (src_[k] == '{' && (src_[k + 1] == '{' || src_[k + 1] == '%' || src_[k + 1] == '#')) return k;
    }
    return std::string_view::npos;
  }

  void EmitText(std::string_view text) {
    if (!text.empty()) tokens_.push_back({TokenType::kText, std::string(text), line_});
    for (char c : text) line_ += c == '\n';
  }

  // After a block or comment tag: '-' strips all following whitespace, otherwise
  // trim_blocks removes one newline.
  void AfterClose(bool strip_after, bool block) {
    if (strip_after) {
      while (pos_ < src_.size() && IsSpace(src_[pos_])) {
        line_ += src_[pos_] == '\n';
        ++pos_;
      }
    } else if (block) {
      if (pos_ < src_.size() && src_[pos_] == '\n') {
        ++pos_;
        ++line_;
      } else if (pos_ + 1 < src_.size() && src_[pos_] == '\r' && src_[pos_ + 1] == '\n') {
        pos_ += 2;
        ++line_;
      }
    }
  }

  void LexComment() {
    const size_t close = src_.find("#}", pos_);
    if (close == std::string_view::npos) Fail(line_, "unterminated comment");
    for (size_t k = pos_; k < close; ++k) line_ += src_[k] == '\n';
    const bool strip_after = close > pos_ && src_[close - 1] == '-';
    pos_ = close + 2;
    AfterClose(strip_after, /*block=*/true);
  }

  void LexTag(char kind) {
    const char close_char = kind == '{' ? '}' : '%';
    tokens_.push_back({kind == '{' ? TokenType::kExprOpen : TokenType::kStmtOpen, "", line_});
    int depth = 0;  // bracket depth, so '}}' inside a dict literal does not end the tag
    while (true) {
      while (pos_ < src_.size() && IsSpace(src_[pos_])) {
        line_ += src_[pos_] == '\n';
        ++pos_;
      }
      if (pos_ >= src_.size()) Fail(line_, "unterminated tag");
      const char c = src_[pos_];
      // Close: "-}}" / "}}" / "-%}" / "%}" (outside brackets).
      if (depth == 0) {
        bool strip_after = false;
        size_t p = pos_;
        if (c == '-' && p + 2 < src_.size() + 0 && src_[p + 1] == close_char && src_[p + 2] == '}') {
          strip_after = true;
          ++p;
        } else if (c == '+' && p + 2 < src_.size() && src_[p + 1] == close_char && src_[p + 2] == '}') {
          ++p;  // '+%}' disables trim_blocks for this tag
          pos_ = p + 2;
          tokens_.push_back({kind == '{' ? TokenType::kExprClose : TokenType::kStmtClose, "", line_});
          return;
        }
        if (p + 1 < src_.size() && src_[p] == close_char && src_[p + 1] == '}') {
          pos_ = p + 2;
          tokens_.push_back({kind == '{' ? TokenType::kExprClose : TokenType::kStmtClose, "", line_});
          AfterClose(strip_after, kind == '%');
          return;
        }
      }
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t e = pos_;
        while (e < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) ++e;
        tokens_.push_back({TokenType::kName, std::string(src_.substr(pos_, e - pos_)), line_});
        pos_ = e;
        continue;
      }
      if (std::isdigit(static_cast<unsigned char>(c))) {
        LexNumber();
        continue;
      }
      if (c == '\'' || c == '"') {
        LexString(c);
        continue;
      }
      static const char* kOps[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">",
                                   "=",  "(",  ")",  "[",  "]",  "{",  "}", ",", ".", ":", "|"};
      bool matched = false;
      for (const char* op : kOps) {
        const std::string_view o(op);
        if (src_.substr(pos_, o.size()) == o) {
          if (o == "(" || o == "[" || o == "{") ++depth;
          if (o == ")" || o == "]" || o == "}") --depth;
          tokens_.push_back({TokenType::kOperator, std::string(o), line_});
          pos_ += o.size();
          matched = true;
          break;
        }
      }
      if (!matched) Fail(line_, std::string("unexpected character '") + c + "' in tag");
    }
  }

  void LexNumber() {
    size_t e = pos_;
    bool is_float = false;
    while (e < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) ++e;
    if (e + 1 < src_.size() && src_[e] == '.' && std::isdigit(static_cast<unsigned char>(src_[e + 1]))) {
      is_float = true;
      ++e;
      while (e < src_.size() && std::isdigit(static_cast<unsigned char>(src_[e]))) ++e;
    }
    if (e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
      size_t k = e + 1;
      if (k < src_.size() && (src_[k] == '+' || src_[k] == '-')) ++k;
      if (k < src_.size() && std::isdigit(static_cast<unsigned char>(src_[k]))) {
        is_float = true;
        e = k;
        while (e < src_.size() && std::isdigit(static_cast<unsigned char>(src_[e]))) ++e;
      }
    }
    std::string text;
    for (size_t k = pos_; k < e; ++k) {
      if (src_[k] != '_') text.push_back(src_[k]);
    }
    tokens_.push_back({is_float ? TokenType::kFloat : TokenType::kInteger, text, line_});
    pos_ = e;
  }

  void LexString(char quote) {
    std::string out;
    size_t k = pos_ + 1;
    while (true) {
      if (k >= src_.size()) Fail(line_, "unterminated string literal");
      const char c = src_[k];
      if (c == quote) break;
      if (c == '\\' && k + 1 < src_.size()) {
        const char e = src_[k + 1];
        k += 2;
        switch (e) {
          case 'n': out.push_back('\n'); break;
          case 't': out.push_back('\t'); break;
          case 'r': out.push_back('\r'); break;
          case 'b': out.push_back('\b'); break;
          case 'f': out.push_back('\f'); break;
          case 'v': out.push_back('\v'); break;
          case '0': out.push_back('\0'); break;
          case '\\': out.push_back('\\'); break;
          case '\'': out.push_back('\''); break;
          case '"': out.push_back('"'); break;
          case '\n': break;  // line continuation
          case 'x':
          case 'u':
          case 'U': {
            const size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            if (k + n > src_.size()) Fail(line_, "truncated escape in string literal");
            char32_t cp = 0;
            for (size_t d = 0; d < n; ++d) {
              const char h = src_[k + d];
              if (!std::isxdigit(static_cast<unsigned char>(h))) Fail(line_, "bad escape in string literal");
              cp = cp * 16 + static_cast<char32_t>(std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (std::tolower(h) - 'a' + 10));
            }
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) Fail(line_, "escape is not a Unicode scalar value");
            utf8::Append(cp, &out);
            k += n;
            break;
          }
          default:
            // Python keeps unknown escapes verbatim.
            out.push_back('\\');
            out.push_back(e);
        }
        continue;
      }
      line_ += c == '\n';
      out.push_back(c);
      ++k;
    }
    tokens_.push_back({TokenType::kString, std::move(out), line_});
    pos_ = k + 1;
  }

  std::string_view src_;
  size_t pos_ = 0;
  size_t line_ = 1;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> Tokenize(std::string_view source) { return Lexer(source).Run(); }

}  // namespace dsv3::jinja
