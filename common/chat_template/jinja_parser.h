// Jinja parser: tokens -> AST. Everything a template uses is resolved here, so an
// unsupported construct (unknown statement, filter, test or method, `include`, `extends`,
// `call` blocks, ...) fails when the template is loaded, never while serving a request.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/chat_template/jinja_lexer.h"
#include "common/chat_template/jinja_value.h"

namespace dsv3::jinja {

struct Expr;
struct Stmt;
using ExprPtr = std::unique_ptr<Expr>;
using StmtList = std::vector<std::unique_ptr<Stmt>>;

struct Expr {
  enum class Kind {
    kLiteral,    // value
    kName,       // name
    kList,       // items
    kTuple,      // items (evaluates to a list)
    kDict,       // keys/items pairs: items[2k] key, items[2k+1] value
    kAttr,       // a.name
    kIndex,      // a[b]
    kSlice,      // a[b:c:d] (items: start, stop, step; null = omitted)
    kCall,       // a(args, kwargs)
    kFilter,     // a | name(args, kwargs)
    kTest,       // a is [not] name(args)
    kUnary,      // op a ("not", "-", "+")
    kBinary,     // a op b
    kCondition,  // items[0] if items[1] else items[2]
  };
  Kind kind;
  size_t line = 0;
  Value value;
  std::string name;  // name / attribute / filter / test / operator
  bool negated = false;
  ExprPtr a;
  ExprPtr b;
  std::vector<ExprPtr> items;  // positional args, list items, dict entries, slice parts
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
};

struct Stmt {
  enum class Kind {
    kText,      // text
    kOutput,    // {{ expr }}
    kIf,        // branches: (cond, body); else body
    kFor,       // targets in iter [if filter]: body [else else_body]
    kSet,       // target (name or ns.attr) = expr, or block set (body)
    kMacro,     // name(params with defaults): body
    kBreak,
    kContinue,
  };
  Kind kind;
  size_t line = 0;
  std::string text;
  ExprPtr expr;                                        // output / set value / for iterable
  ExprPtr filter;                                      // for ... if filter
  std::vector<std::pair<ExprPtr, StmtList>> branches;  // if / elif
  StmtList body;
  StmtList else_body;
  std::vector<std::string> targets;     // for loop vars, set names
  std::string attr;                     // set ns.attr
  std::string name;                     // macro name
  std::vector<std::pair<std::string, ExprPtr>> params;  // macro params (default may be null)
};

// Parses a whole template. Throws JinjaError with the line number on any error.
StmtList Parse(std::string_view source);

// Names the interpreter implements (the parser checks templates against them).
bool IsKnownFilter(std::string_view name);
bool IsKnownTest(std::string_view name);
bool IsKnownMethod(std::string_view name);

}  // namespace dsv3::jinja
