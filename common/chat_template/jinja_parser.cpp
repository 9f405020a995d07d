#include "common/chat_template/jinja_parser.h"

#include <algorithm>
#include <charconv>

namespace dsv3::jinja {
namespace {

constexpr std::string_view kFilters[] = {
    "abs",     "capitalize", "count",  "d",      "default", "dictsort", "e",          "escape", "first",
    "float",   "indent",     "int",    "items",  "join",    "last",     "length",     "list",   "lower",
    "map",     "max",        "min",    "reject", "rejectattr", "replace", "reverse",  "round",  "safe",
    "select",  "selectattr", "sort",   "string", "sum",     "title",    "tojson",     "trim",   "unique",
    "upper",   "wordcount"};
constexpr std::string_view kTests[] = {
    "defined", "undefined", "none",    "string", "number",  "integer", "float", "boolean",
    "true",    "false",     "mapping", "iterable", "sequence", "callable", "odd", "even",
    "divisibleby", "eq",    "equalto", "ne",     "lt",      "gt",      "le",    "ge",
    "in",      "lower",     "upper"};
constexpr std::string_view kMethods[] = {
    "startswith", "endswith", "split",   "rsplit",  "strip",      "lstrip",    "rstrip",  "upper",
    "lower",      "title",    "capitalize", "replace", "find",    "count",     "join",    "splitlines",
    "isdigit",    "isalpha",  "isalnum", "isspace", "islower",    "isupper",   "removeprefix",
    "removesuffix", "items",  "keys",    "values",  "get",        "cycle"};
// Functions a template may call besides its own macros.
constexpr std::string_view kGlobals[] = {"range", "namespace", "raise_exception", "dict", "strftime_now"};

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  StmtList ParseTemplate() {
    StmtList out = ParseBody({});
    if (Peek().type != TokenType::kEnd) Fail("unexpected '" + Peek().value + "'");
    // Calls of plain names must reach a macro of this template or a known global.
    for (const auto& [name, line] : called_names_) {
      if (std::ranges::find(kGlobals, name) == std::end(kGlobals) &&
          std::ranges::find(macro_names_, name) == macro_names_.end()) {
        throw JinjaError("template line " + std::to_string(line) + ": unsupported function '" + name + "()'");
      }
    }
    return out;
  }

 private:
  const Token& Peek(size_t ahead = 0) const { return t_[std::min(p_ + ahead, t_.size() - 1)]; }
  const Token& Next() { return t_[p_ < t_.size() - 1 ? p_++ : p_]; }
  [[noreturn]] void Fail(const std::string& msg) const {
    throw JinjaError("template line " + std::to_string(Peek().line) + ": " + msg);
  }
  bool IsOp(std::string_view op, size_t ahead = 0) const {
    return Peek(ahead).type == TokenType::kOperator && Peek(ahead).value == op;
  }
  bool IsName(std::string_view name, size_t ahead = 0) const {
    return Peek(ahead).type == TokenType::kName && Peek(ahead).value == name;
  }
  void ExpectOp(std::string_view op) {
    if (!IsOp(op)) Fail("expected '" + std::string(op) + "', got '" + Peek().value + "'");
    Next();
  }
  void ExpectName(std::string_view name) {
    if (!IsName(name)) Fail("expected '" + std::string(name) + "', got '" + Peek().value + "'");
    Next();
  }
  std::string ExpectIdentifier() {
    if (Peek().type != TokenType::kName) Fail("expected a name, got '" + Peek().value + "'");
    return Next().value;
  }
  void ExpectStmtClose() {
    if (Peek().type != TokenType::kStmtClose) Fail("expected '%}', got '" + Peek().value + "'");
    Next();
  }

  // Parses statements until a {% tag %} whose keyword is in `terminators` (not consumed).
  StmtList ParseBody(const std::vector<std::string_view>& terminators) {
    StmtList out;
    while (true) {
      const Token& tok = Peek();
      if (tok.type == TokenType::kEnd) {
        if (!terminators.empty()) Fail("missing {% " + std::string(terminators.front()) + " %}");
        return out;
      }
      if (tok.type == TokenType::kText) {
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::kText;
        s->line = tok.line;
        s->text = tok.value;
        out.push_back(std::move(s));
        Next();
        continue;
      }
      if (tok.type == TokenType::kExprOpen) {
        Next();
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::kOutput;
        s->line = tok.line;
        s->expr = ParseExpression();
        if (Peek().type != TokenType::kExprClose) Fail("expected '}}', got '" + Peek().value + "'");
        Next();
        out.push_back(std::move(s));
        continue;
      }
      if (tok.type == TokenType::kStmtOpen) {
        const Token& kw = Peek(1);
        if (kw.type != TokenType::kName) Fail("expected a statement keyword");
        if (std::find(terminators.begin(), terminators.end(), kw.value) != terminators.end()) return out;
        Next();  // {%
        auto s = ParseStatement();
        if (s) out.push_back(std::move(s));
        continue;
      }
      Fail("unexpected '" + tok.value + "'");
    }
  }

  std::unique_ptr<Stmt> ParseStatement() {
    const size_t line = Peek().line;
    const std::string kw = Next().value;
    auto s = std::make_unique<Stmt>();
    s->line = line;
    if (kw == "if") {
      s->kind = Stmt::Kind::kIf;
      ExprPtr cond = ParseExpression();
      ExpectStmtClose();
      StmtList body = ParseBody({"elif", "else", "endif"});
      s->branches.emplace_back(std::move(cond), std::move(body));
      while (true) {
        Next();  // {%
        const std::string k = Next().value;
        if (k == "elif") {
          ExprPtr c = ParseExpression();
          ExpectStmtClose();
          StmtList b = ParseBody({"elif", "else", "endif"});
          s->branches.emplace_back(std::move(c), std::move(b));
        } else if (k == "else") {
          ExpectStmtClose();
          s->else_body = ParseBody({"endif"});
        } else {  // endif
          ExpectStmtClose();
          break;
        }
      }
      return s;
    }
    if (kw == "for") {
      s->kind = Stmt::Kind::kFor;
      s->targets.push_back(ExpectIdentifier());
      while (IsOp(",")) {
        Next();
        s->targets.push_back(ExpectIdentifier());
      }
      ExpectName("in");
      s->expr = ParseOr();  // not a full expression: `if` here is the loop filter
      if (IsName("if")) {
        Next();
        s->filter = ParseOr();
      }
      if (IsName("recursive")) Fail("recursive for loops are not supported");
      ExpectStmtClose();
      s->body = ParseBody({"else", "endfor"});
      Next();
      if (Next().value == "else") {
        ExpectStmtClose();
        s->else_body = ParseBody({"endfor"});
        Next();
        Next();
      }
      ExpectStmtClose();
      return s;
    }
    if (kw == "set") {
      s->kind = Stmt::Kind::kSet;
      const std::string first = ExpectIdentifier();
      if (IsOp(".")) {
        Next();
        s->targets.push_back(first);
        s->attr = ExpectIdentifier();
      } else {
        s->targets.push_back(first);
        while (IsOp(",")) {
          Next();
          s->targets.push_back(ExpectIdentifier());
        }
      }
      if (IsOp("=")) {
        Next();
        s->expr = ParseTupleOrExpression();
        ExpectStmtClose();
      } else {
        // Block set: {% set x %}...{% endset %}
        if (!s->attr.empty() || s->targets.size() != 1) Fail("block set takes one plain name");
        if (IsOp("|")) Fail("filtered block set is not supported");
        ExpectStmtClose();
        s->body = ParseBody({"endset"});
        Next();
        Next();
        ExpectStmtClose();
      }
      return s;
    }
    if (kw == "macro") {
      s->kind = Stmt::Kind::kMacro;
      s->name = ExpectIdentifier();
      macro_names_.push_back(s->name);
      ExpectOp("(");
      while (!IsOp(")")) {
        std::string param = ExpectIdentifier();
        ExprPtr def;
        if (IsOp("=")) {
          Next();
          def = ParseExpression();
        }
        s->params.emplace_back(std::move(param), std::move(def));
        if (!IsOp(")")) ExpectOp(",");
      }
      Next();
      ExpectStmtClose();
      s->body = ParseBody({"endmacro"});
      Next();
      Next();
      if (Peek().type == TokenType::kName) Next();  // {% endmacro name %}
      ExpectStmtClose();
      return s;
    }
    if (kw == "break" || kw == "continue") {
      s->kind = kw == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue;
      ExpectStmtClose();
      return s;
    }
    if (kw == "generation" || kw == "endgeneration") {
      // transformers' AssistantTracker markers: no output of their own.
      ExpectStmtClose();
      return nullptr;
    }
    Fail("unsupported statement '{% " + kw + " %}'");
  }

  ExprPtr Make(Expr::Kind kind) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = Peek().line;
    return e;
  }

  // `a, b` without brackets (set x = a, b) is a tuple.
  ExprPtr ParseTupleOrExpression() {
    ExprPtr first = ParseExpression();
    if (!IsOp(",")) return first;
    auto t = Make(Expr::Kind::kTuple);
    t->items.push_back(std::move(first));
    while (IsOp(",")) {
      Next();
      t->items.push_back(ParseExpression());
    }
    return t;
  }

  ExprPtr ParseExpression() {
    ExprPtr e = ParseOr();
    while (IsName("if")) {
      Next();
      auto c = Make(Expr::Kind::kCondition);
      ExprPtr cond = ParseOr();
      ExprPtr other;
      if (IsName("else")) {
        Next();
        other = ParseExpression();
      }
      c->items.push_back(std::move(e));
      c->items.push_back(std::move(cond));
      c->items.push_back(std::move(other));
      e = std::move(c);
    }
    return e;
  }

  ExprPtr Binary(std::string op, ExprPtr a, ExprPtr b) {
    auto e = Make(Expr::Kind::kBinary);
    e->name = std::move(op);
    e->a = std::move(a);
    e->b = std::move(b);
    return e;
  }

  ExprPtr ParseOr() {
    ExprPtr e = ParseAnd();
    while (IsName("or")) {
      Next();
      e = Binary("or", std::move(e), ParseAnd());
    }
    return e;
  }
  ExprPtr ParseAnd() {
    ExprPtr e = ParseNot();
    while (IsName("and")) {
      Next();
      e = Binary("and", std::move(e), ParseNot());
    }
    return e;
  }
  ExprPtr ParseNot() {
    if (IsName("not")) {
      Next();
      auto e = Make(Expr::Kind::kUnary);
      e->name = "not";
      e->a = ParseNot();
      return e;
    }
    return ParseCompare();
  }
  ExprPtr ParseCompare() {
    ExprPtr e = ParseConcat();
    while (true) {
      if (Peek().type == TokenType::kOperator &&
          (Peek().value == "==" || Peek().value == "!=" || Peek().value == "<" || Peek().value == ">" ||
           Peek().value == "<=" || Peek().value == ">=")) {
        std::string op = Next().value;
        e = Binary(op, std::move(e), ParseConcat());
      } else if (IsName("in")) {
        Next();
        e = Binary("in", std::move(e), ParseConcat());
      } else if (IsName("not") && IsName("in", 1)) {
        Next();
        Next();
        e = Binary("not in", std::move(e), ParseConcat());
      } else {
        return e;
      }
    }
  }
  ExprPtr ParseConcat() {
    ExprPtr e = ParseAdd();
    while (IsOp("~")) {
      Next();
      e = Binary("~", std::move(e), ParseAdd());
    }
    return e;
  }
  ExprPtr ParseAdd() {
    ExprPtr e = ParseMul();
    while (IsOp("+") || IsOp("-")) {
      std::string op = Next().value;
      e = Binary(op, std::move(e), ParseMul());
    }
    return e;
  }
  ExprPtr ParseMul() {
    ExprPtr e = ParsePow();
    while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      std::string op = Next().value;
      e = Binary(op, std::move(e), ParsePow());
    }
    return e;
  }
  ExprPtr ParsePow() {
    ExprPtr e = ParseUnary(true);
    while (IsOp("**")) {
      Next();
      e = Binary("**", std::move(e), ParseUnary(true));
    }
    return e;
  }
  ExprPtr ParseUnary(bool with_filter) {
    ExprPtr e;
    if (IsOp("-") || IsOp("+")) {
      auto u = Make(Expr::Kind::kUnary);
      u->name = Next().value;
      u->a = ParseUnary(false);
      e = std::move(u);
    } else {
      e = ParsePostfix(ParsePrimary());
    }
    if (with_filter) e = ParseFilterExpr(std::move(e));
    return e;
  }

  void ParseCallArgs(Expr* target) {
    ExpectOp("(");
    while (!IsOp(")")) {
      if (Peek().type == TokenType::kName && IsOp("=", 1)) {
        std::string key = Next().value;
        Next();
        target->kwargs.emplace_back(std::move(key), ParseExpression());
      } else {
        if (!target->kwargs.empty()) Fail("positional argument after keyword argument");
        target->items.push_back(ParseExpression());
      }
      if (!IsOp(")")) ExpectOp(",");
    }
    Next();
  }

  ExprPtr ParseFilterExpr(ExprPtr e) {
    while (true) {
      if (IsOp("|")) {
        Next();
        auto f = Make(Expr::Kind::kFilter);
        f->name = ExpectIdentifier();
        while (IsOp(".")) {  // dotted filter names are not a thing we support
          Fail("unsupported filter name");
        }
        if (!IsKnownFilter(f->name)) Fail("unsupported filter '" + f->name + "'");
        f->a = std::move(e);
        if (IsOp("(")) ParseCallArgs(f.get());
        e = std::move(f);
      } else if (IsName("is")) {
        Next();
        auto t = Make(Expr::Kind::kTest);
        if (IsName("not")) {
          Next();
          t->negated = true;
        }
        // Tests named like keywords / operators.
        if (Peek().type == TokenType::kName) {
          t->name = Next().value;
        } else if (IsOp("==") || IsOp("!=") || IsOp("<") || IsOp(">") || IsOp("<=") || IsOp(">=")) {
          const std::string op = Next().value;
          t->name = op == "==" ? "eq" : op == "!=" ? "ne" : op == "<" ? "lt" : op == ">" ? "gt" : op == "<=" ? "le" : "ge";
        } else {
          Fail("expected a test name after 'is'");
        }
        if (!IsKnownTest(t->name)) Fail("unsupported test '" + t->name + "'");
        t->a = std::move(e);
        if (IsOp("(")) {
          ParseCallArgs(t.get());
        } else if (Peek().type == TokenType::kString || Peek().type == TokenType::kInteger ||
                   Peek().type == TokenType::kFloat ||
                   (Peek().type == TokenType::kName && !IsName("and") && !IsName("or") && !IsName("else") &&
                    !IsName("if") && !IsName("is") && !IsName("in") && !IsName("not"))) {
          t->items.push_back(ParsePostfix(ParsePrimary()));
        }
        e = std::move(t);
      } else if (IsOp("(")) {
        auto c = Make(Expr::Kind::kCall);
        NoteCall(*e);
        c->a = std::move(e);
        ParseCallArgs(c.get());
        e = std::move(c);
      } else {
        return e;
      }
    }
  }

  ExprPtr ParsePostfix(ExprPtr e) {
    while (true) {
      if (IsOp(".")) {
        Next();
        auto a = Make(Expr::Kind::kAttr);
        if (Peek().type == TokenType::kInteger) {
          // x.0 is x[0] in Jinja.
          a->kind = Expr::Kind::kIndex;
          auto lit = Make(Expr::Kind::kLiteral);
          lit->value = Value::Int(std::stoll(Next().value));
          a->a = std::move(e);
          a->b = std::move(lit);
        } else {
          a->name = ExpectIdentifier();
          a->a = std::move(e);
          if (IsOp("(") && !IsKnownMethod(a->name)) {
            // Calling an attribute is a method call unless it names a macro stored in a
            // dict, which templates never do; reject unknown methods now.
            Fail("unsupported method '" + a->name + "()'");
          }
        }
        e = std::move(a);
      } else if (IsOp("[")) {
        Next();
        ExprPtr parts[3];
        int n = 0;
        bool slice = false;
        while (true) {
          if (IsOp(":")) {
            slice = true;
            Next();
            if (++n > 2) Fail("too many ':' in slice");
            continue;
          }
          if (IsOp("]")) break;
          if (parts[n]) Fail("expected ':' or ']' in subscript");
          parts[n] = ParseExpression();
        }
        Next();
        if (slice) {
          auto s = Make(Expr::Kind::kSlice);
          s->a = std::move(e);
          for (auto& part : parts) s->items.push_back(std::move(part));
          e = std::move(s);
        } else {
          if (!parts[0]) Fail("empty subscript");
          auto i = Make(Expr::Kind::kIndex);
          i->a = std::move(e);
          i->b = std::move(parts[0]);
          e = std::move(i);
        }
      } else if (IsOp("(")) {
        auto c = Make(Expr::Kind::kCall);
        NoteCall(*e);
        c->a = std::move(e);
        ParseCallArgs(c.get());
        e = std::move(c);
      } else {
        return e;
      }
    }
  }

  ExprPtr ParsePrimary() {
    const Token& tok = Peek();
    switch (tok.type) {
      case TokenType::kString: {
        auto e = Make(Expr::Kind::kLiteral);
        std::string s = Next().value;
        // Adjacent string literals concatenate, as in Python.
        while (Peek().type == TokenType::kString) s += Next().value;
        e->value = Value::String(std::move(s));
        return e;
      }
      case TokenType::kInteger: {
        auto e = Make(Expr::Kind::kLiteral);
        const std::string text = Next().value;
        int64_t v = 0;
        auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
        if (ec != std::errc()) Fail("integer literal out of range");
        e->value = Value::Int(v);
        return e;
      }
      case TokenType::kFloat: {
        auto e = Make(Expr::Kind::kLiteral);
        e->value = Value::Float(std::stod(Next().value));
        return e;
      }
      case TokenType::kName: {
        const std::string name = Next().value;
        auto e = Make(Expr::Kind::kLiteral);
        if (name == "true" || name == "True") {
          e->value = Value::Bool(true);
        } else if (name == "false" || name == "False") {
          e->value = Value::Bool(false);
        } else if (name == "none" || name == "None") {
          e->value = Value::None();
        } else {
          e->kind = Expr::Kind::kName;
          e->name = name;
        }
        return e;
      }
      case TokenType::kOperator: {
        if (tok.value == "(") {
          Next();
          if (IsOp(")")) {
            Next();
            return Make(Expr::Kind::kTuple);
          }
          ExprPtr first = ParseExpression();
          if (IsOp(",")) {
            auto t = Make(Expr::Kind::kTuple);
            t->items.push_back(std::move(first));
            while (IsOp(",")) {
              Next();
              if (IsOp(")")) break;
              t->items.push_back(ParseExpression());
            }
            ExpectOp(")");
            return t;
          }
          ExpectOp(")");
          return first;
        }
        if (tok.value == "[") {
          Next();
          auto l = Make(Expr::Kind::kList);
          while (!IsOp("]")) {
            l->items.push_back(ParseExpression());
            if (!IsOp("]")) ExpectOp(",");
          }
          Next();
          return l;
        }
        if (tok.value == "{") {
          Next();
          auto d = Make(Expr::Kind::kDict);
          while (!IsOp("}")) {
            d->items.push_back(ParseExpression());
            ExpectOp(":");
            d->items.push_back(ParseExpression());
            if (!IsOp("}")) ExpectOp(",");
          }
          Next();
          return d;
        }
        break;
      }
      default:
        break;
    }
    Fail("unexpected '" + tok.value + "' in expression");
  }

  void NoteCall(const Expr& callee) {
    if (callee.kind == Expr::Kind::kName) called_names_.emplace_back(callee.name, callee.line);
  }

  std::vector<Token> t_;
  size_t p_ = 0;
  std::vector<std::string> macro_names_;
  std::vector<std::pair<std::string, size_t>> called_names_;
};

}  // namespace

bool IsKnownFilter(std::string_view name) { return std::ranges::find(kFilters, name) != std::end(kFilters); }
bool IsKnownTest(std::string_view name) { return std::ranges::find(kTests, name) != std::end(kTests); }
bool IsKnownMethod(std::string_view name) { return std::ranges::find(kMethods, name) != std::end(kMethods); }

StmtList Parse(std::string_view source) { return Parser(Tokenize(source)).ParseTemplate(); }

}  // namespace dsv3::jinja
