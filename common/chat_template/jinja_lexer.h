// Jinja lexer: template text -> tokens, applying the environment transformers uses for chat
// templates (trim_blocks, lstrip_blocks, no trailing newline kept) and the `-` whitespace
// control markers of `{{- -}}`, `{%- -%}`, `{#- -#}`.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace dsv3::jinja {

enum class TokenType {
  kText,         // literal template text
  kExprOpen,     // {{
  kExprClose,    // }}
  kStmtOpen,     // {%
  kStmtClose,    // %}
  kName,
  kString,       // value already unescaped
  kInteger,
  kFloat,
  kOperator,     // + - * / // % ** ~ == != < > <= >= = ( ) [ ] { } , . : |
  kEnd,
};

struct Token {
  TokenType type;
  std::string value;
  size_t line;  // 1-based, for error messages
};

// Throws JinjaError on malformed input (unterminated tags, strings, unknown characters).
std::vector<Token> Tokenize(std::string_view source);

}  // namespace dsv3::jinja
