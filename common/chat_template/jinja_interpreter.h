// JinjaTemplate: a parsed template plus the evaluator that renders it.
//
// Semantics follow Jinja2 as configured by Hugging Face transformers for chat templates
// (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols) so prompts are
// byte-identical to the reference. Parse errors and unsupported constructs are reported by
// Parse(); Render() fails only on data-dependent errors (raise_exception(), type errors).
// A parsed template is immutable and can render concurrently from many threads.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/chat_template/jinja_parser.h"
#include "common/chat_template/jinja_value.h"
#include "common/status.h"

namespace dsv3::jinja {

struct RenderResult {
  std::string text;
  // Byte ranges of `text` that came from tainted (request) strings, sorted.
  std::vector<std::pair<size_t, size_t>> tainted;
};

class JinjaTemplate {
 public:
  static StatusOr<std::unique_ptr<JinjaTemplate>> Parse(std::string_view source);

  // `context`: the template's variables (messages, add_generation_prompt, bos_token, ...).
  StatusOr<RenderResult> Render(const std::vector<std::pair<std::string, Value>>& context) const;

 private:
  JinjaTemplate() = default;
  StmtList body_;
};

}  // namespace dsv3::jinja
