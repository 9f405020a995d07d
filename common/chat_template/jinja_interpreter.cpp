#include "common/chat_template/jinja_interpreter.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <map>
#include <optional>

#include "common/tokenizer/utf8.h"

namespace dsv3::jinja {
namespace {

using Kwargs = std::vector<std::pair<std::string, Value>>;

// Rendering is bounded so a hostile template or input cannot spin forever.
constexpr int kMaxCallDepth = 64;
constexpr size_t kMaxOutputBytes = 256u << 20;
constexpr size_t kMaxLoopIterations = 10'000'000;

[[noreturn]] void Fail(size_t line, const std::string& msg) {
  throw JinjaError("template line " + std::to_string(line) + ": " + msg);
}

bool IsPySpace(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

std::vector<char32_t> CodePoints(std::string_view s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  size_t pos = 0;
  while (pos < s.size()) out.push_back(utf8::DecodeAt(s, &pos));
  return out;
}

std::string FromCodePoints(const std::vector<char32_t>& cps, size_t begin, size_t end) {
  std::string out;
  for (size_t k = begin; k < end; ++k) utf8::Append(cps[k], &out);
  return out;
}

// Python str.strip/lstrip/rstrip.
std::string Strip(std::string_view s, const Value* chars, bool left, bool right) {
  const std::vector<char32_t> cps = CodePoints(s);
  std::vector<char32_t> set;
  const bool custom = chars != nullptr && !chars->is_none() && !chars->is_undefined();
  if (custom) set = CodePoints(chars->s);
  auto strip_it = [&](char32_t c) {
    return custom ? std::find(set.begin(), set.end(), c) != set.end() : IsPySpace(c);
  };
  size_t b = 0, e = cps.size();
  if (left) {
    while (b < e && strip_it(cps[b])) ++b;
  }
  if (right) {
    while (e > b && strip_it(cps[e - 1])) --e;
  }
  return FromCodePoints(cps, b, e);
}

std::string AsciiCase(std::string s, bool upper) {
  for (char& c : s) c = static_cast<char>(upper ? std::toupper(static_cast<unsigned char>(c)) : std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string Title(std::string_view s) {
  std::string out(s);
  bool prev_alpha = false;
  for (char& c : out) {
    const auto u = static_cast<unsigned char>(c);
    const bool alpha = std::isalpha(u) != 0;
    if (alpha) c = static_cast<char>(prev_alpha ? std::tolower(u) : std::toupper(u));
    prev_alpha = alpha || (u >= 0x80);
  }
  return out;
}

std::string Capitalize(std::string_view s) {
  std::string out = AsciiCase(std::string(s), false);
  if (!out.empty()) out[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(out[0])));
  return out;
}

std::string ReplaceAll(std::string_view s, std::string_view from, std::string_view to, int64_t count) {
  std::string out;
  if (from.empty()) {
    // Python inserts `to` between code points (and at both ends).
    const auto cps = CodePoints(s);
    int64_t done = 0;
    for (size_t k = 0; k <= cps.size(); ++k) {
      if (count < 0 || done < count) {
        out += to;
        ++done;
      }
      if (k < cps.size()) utf8::Append(cps[k], &out);
    }
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t hit = s.find(from, pos);
    if (hit == std::string_view::npos) break;
    out.append(s.substr(pos, hit - pos));
    out.append(to);
    pos = hit + from.size();
    ++done;
  }
  out.append(s.substr(pos));
  return out;
}

const Value* Kwarg(const Kwargs& kwargs, std::string_view name) {
  for (const auto& [k, v] : kwargs) {
    if (k == name) return &v;
  }
  return nullptr;
}

// Positional argument `index`, else keyword `name`, else nullptr.
const Value* Arg(const std::vector<Value>& args, const Kwargs& kwargs, size_t index, std::string_view name) {
  if (index < args.size()) return &args[index];
  return Kwarg(kwargs, name);
}

double AsDouble(const Value& v, size_t line) {
  if (v.kind == Value::Kind::kInt) return static_cast<double>(v.i);
  if (v.kind == Value::Kind::kFloat) return v.f;
  if (v.kind == Value::Kind::kBool) return v.b ? 1 : 0;
  Fail(line, std::string("expected a number, got ") + v.TypeName());
}

int64_t AsInt(const Value& v, size_t line) {
  if (v.kind == Value::Kind::kInt) return v.i;
  if (v.kind == Value::Kind::kBool) return v.b ? 1 : 0;
  Fail(line, std::string("expected an integer, got ") + v.TypeName());
}

const std::string& AsString(const Value& v, size_t line, const char* what) {
  if (!v.is_string()) Fail(line, std::string(what) + " expects a string, got " + v.TypeName());
  return v.s;
}

// Items of an iterable value, as Jinja iterates them (dicts yield keys, strings code points).
std::vector<Value> Iterate(const Value& v, size_t line) {
  switch (v.kind) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      if (v.kind == Value::Kind::kNone) Fail(line, "'NoneType' object is not iterable");
      return {};
    case Value::Kind::kArray:
      return v.arr->items;
    case Value::Kind::kObject: {
      std::vector<Value> keys;
      for (const auto& [k, e] : v.obj->items) keys.push_back(Value::String(k, v.obj->tainted_keys));
      return keys;
    }
    case Value::Kind::kString: {
      std::vector<Value> chars;
      const auto cps = CodePoints(v.s);
      for (char32_t c : cps) {
        std::string s;
        utf8::Append(c, &s);
        chars.push_back(Value::String(std::move(s), v.is_tainted()));
      }
      return chars;
    }
    default:
      Fail(line, std::string("'") + v.TypeName() + "' object is not iterable");
  }
}

int Compare(const Value& a, const Value& b, size_t line) {
  if ((a.is_number() || a.kind == Value::Kind::kBool) && (b.is_number() || b.kind == Value::Kind::kBool)) {
    const double x = AsDouble(a, line), y = AsDouble(b, line);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) return a.s < b.s ? -1 : a.s > b.s ? 1 : 0;  // UTF-8 order = code point order
  if (a.is_array() && b.is_array()) {
    const size_t n = std::min(a.arr->items.size(), b.arr->items.size());
    for (size_t k = 0; k < n; ++k) {
      const int c = Compare(a.arr->items[k], b.arr->items[k], line);
      if (c != 0) return c;
    }
    return a.arr->items.size() < b.arr->items.size() ? -1 : a.arr->items.size() > b.arr->items.size() ? 1 : 0;
  }
  Fail(line, std::string("cannot compare ") + a.TypeName() + " with " + b.TypeName());
}

Value Lookup(const Value& obj, const std::string& key) {
  if (obj.is_object()) {
    const Value* found = obj.obj->Find(key);
    return found != nullptr ? *found : Value::Undefined(key);
  }
  return Value::Undefined(key);
}

Value Normalize(int64_t index, size_t size, bool* ok) {
  if (index < 0) index += static_cast<int64_t>(size);
  *ok = index >= 0 && static_cast<size_t>(index) < size;
  return Value::Int(index);
}

struct Scope {
  std::map<std::string, Value, std::less<>> vars;
};

enum class Flow { kNormal, kBreak, kContinue };

struct Output {
  std::string text;
  std::vector<std::pair<size_t, size_t>> tainted;
  void Append(const Value& v) {
    const size_t base = text.size();
    for (const auto& [b, e] : v.taint) {
      if (!tainted.empty() && tainted.back().second == base + b) {
        tainted.back().second = base + e;
      } else {
        tainted.emplace_back(base + b, base + e);
      }
    }
    text += v.s;
    if (text.size() > kMaxOutputBytes) throw JinjaError("rendered output exceeds the size limit");
  }
};

class Renderer {
 public:
  explicit Renderer(const std::vector<std::pair<std::string, Value>>& context) {
    scopes_.push_back(std::make_shared<Scope>());
    for (const auto& [k, v] : context) scopes_.front()->vars[k] = v;
    InstallGlobals();
  }

  void Exec(const StmtList& body, Output* out) {
    const Flow flow = ExecBody(body, out);
    if (flow != Flow::kNormal) throw JinjaError("'break' or 'continue' outside a loop");
  }

 private:
  void InstallGlobals() {
    auto& g = scopes_.front()->vars;
    g.try_emplace("raise_exception", Value::Func("raise_exception", [](std::vector<Value>& args, Kwargs&) -> Value {
      throw JinjaError("raise_exception: " + (args.empty() ? std::string() : ToStringValue(args[0]).s));
    }));
    g.try_emplace("namespace", Value::Func("namespace", [](std::vector<Value>& args, Kwargs& kwargs) {
      Value ns = Value::Object({}, /*namespace_object=*/true);
      for (const Value& a : args) {
        if (a.is_object()) {
          for (const auto& [k, v] : a.obj->items) ns.obj->Set(k, v);
        }
      }
      for (auto& [k, v] : kwargs) ns.obj->Set(k, v);
      return ns;
    }));
    g.try_emplace("dict", Value::Func("dict", [](std::vector<Value>& args, Kwargs& kwargs) {
      Value d = Value::Object({});
      for (const Value& a : args) {
        if (a.is_object()) {
          for (const auto& [k, v] : a.obj->items) d.obj->Set(k, v);
        }
      }
      for (auto& [k, v] : kwargs) d.obj->Set(k, v);
      return d;
    }));
    g.try_emplace("range", Value::Func("range", [](std::vector<Value>& args, Kwargs&) {
      int64_t start = 0, stop = 0, step = 1;
      if (args.size() == 1) {
        stop = AsInt(args[0], 0);
      } else if (args.size() >= 2) {
        start = AsInt(args[0], 0);
        stop = AsInt(args[1], 0);
        if (args.size() >= 3) step = AsInt(args[2], 0);
      }
      if (step == 0) throw JinjaError("range() step must not be zero");
      std::vector<Value> items;
      for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
        if (items.size() >= kMaxLoopIterations) throw JinjaError("range() too large");
        items.push_back(Value::Int(k));
      }
      return Value::Array(std::move(items));
    }));
    g.try_emplace("strftime_now", Value::Func("strftime_now", [](std::vector<Value>& args, Kwargs&) {
      const std::string fmt = args.empty() ? std::string("%Y-%m-%d") : ToStringValue(args[0]).s;
      const std::time_t now = std::time(nullptr);
      std::tm tm{};
      localtime_r(&now, &tm);
      char buf[256];
      const size_t n = std::strftime(buf, sizeof(buf), fmt.c_str(), &tm);
      return Value::String(std::string(buf, n));
    }));
  }

  Value Get(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto found = (*it)->vars.find(name);
      if (found != (*it)->vars.end()) return found->second;
    }
    return Value::Undefined(name);
  }

  void SetLocal(const std::string& name, Value v) { scopes_.back()->vars[name] = std::move(v); }

  Flow ExecBody(const StmtList& body, Output* out) {
    for (const auto& stmt : body) {
      const Flow flow = ExecStmt(*stmt, out);
      if (flow != Flow::kNormal) return flow;
    }
    return Flow::kNormal;
  }

  Flow ExecStmt(const Stmt& s, Output* out) {
    switch (s.kind) {
      case Stmt::Kind::kText:
        out->Append(Value::String(s.text));
        return Flow::kNormal;
      case Stmt::Kind::kOutput:
        out->Append(ToStringValue(Eval(*s.expr)));
        return Flow::kNormal;
      case Stmt::Kind::kIf:
        for (const auto& [cond, body] : s.branches) {
          if (Eval(*cond).Truthy()) return ExecBody(body, out);
        }
        return ExecBody(s.else_body, out);
      case Stmt::Kind::kFor:
        return ExecFor(s, out);
      case Stmt::Kind::kSet: {
        if (!s.attr.empty()) {
          Value target = Get(s.targets[0]);
          if (!target.is_object() || !target.obj->is_namespace) {
            Fail(s.line, "cannot assign attribute '" + s.attr + "' of '" + s.targets[0] + "': not a namespace()");
          }
          target.obj->Set(s.attr, Eval(*s.expr));
          return Flow::kNormal;
        }
        if (!s.expr) {
          Output block;
          const Flow flow = ExecBody(s.body, &block);
          if (flow != Flow::kNormal) return flow;
          Value v = Value::String(block.text);
          for (const auto& [b, e] : block.tainted) v.taint.emplace_back(static_cast<uint32_t>(b), static_cast<uint32_t>(e));
          SetLocal(s.targets[0], std::move(v));
          return Flow::kNormal;
        }
        Value v = Eval(*s.expr);
        if (s.targets.size() == 1) {
          SetLocal(s.targets[0], std::move(v));
        } else {
          std::vector<Value> items = Iterate(v, s.line);
          if (items.size() != s.targets.size()) Fail(s.line, "wrong number of values to unpack");
          for (size_t k = 0; k < items.size(); ++k) SetLocal(s.targets[k], items[k]);
        }
        return Flow::kNormal;
      }
      case Stmt::Kind::kMacro:
        DefineMacro(s);
        return Flow::kNormal;
      case Stmt::Kind::kBreak:
        return Flow::kBreak;
      case Stmt::Kind::kContinue:
        return Flow::kContinue;
    }
    return Flow::kNormal;
  }

  void DefineMacro(const Stmt& s) {
    const Stmt* macro = &s;
    // Weak: the macro value lives in that scope, a strong pointer would be a cycle.
    std::weak_ptr<Scope> defining_scope = scopes_.front();
    SetLocal(s.name, Value::Func(s.name, [this, macro, defining_scope](std::vector<Value>& args, Kwargs& kwargs) {
      if (++depth_ > kMaxCallDepth) throw JinjaError("macro recursion too deep");
      auto frame = std::make_shared<Scope>();
      for (size_t k = 0; k < macro->params.size(); ++k) {
        const auto& [name, def] = macro->params[k];
        if (k < args.size()) {
          frame->vars[name] = args[k];
        } else if (const Value* kw = Kwarg(kwargs, name)) {
          frame->vars[name] = *kw;
        } else if (def) {
          frame->vars[name] = Eval(*def);
        } else {
          frame->vars[name] = Value::Undefined(name);
        }
      }
      if (args.size() > macro->params.size()) Fail(macro->line, "macro '" + macro->name + "' takes fewer arguments");
      // The macro sees the template's top-level variables and its own parameters.
      std::vector<std::shared_ptr<Scope>> saved;
      saved.swap(scopes_);
      scopes_.push_back(defining_scope.lock());
      if (!scopes_.back()) throw JinjaError("macro called after its template finished");
      scopes_.push_back(frame);
      Output out;
      try {
        ExecBody(macro->body, &out);
      } catch (...) {
        scopes_.swap(saved);
        --depth_;
        throw;
      }
      scopes_.swap(saved);
      --depth_;
      Value v = Value::String(out.text);
      for (const auto& [b, e] : out.tainted) v.taint.emplace_back(static_cast<uint32_t>(b), static_cast<uint32_t>(e));
      return v;
    }));
  }

  Flow ExecFor(const Stmt& s, Output* out) {
    const Value iterable = Eval(*s.expr);
    std::vector<Value> items = Iterate(iterable, s.line);
    if (s.targets.size() > 1 && iterable.is_object()) {
      // `for k, v in dict` is an error in Python; templates use dict.items().
      Fail(s.line, "cannot unpack dict keys; iterate over .items()");
    }
    scopes_.push_back(std::make_shared<Scope>());
    auto bind = [&](const Value& item) {
      if (s.targets.size() == 1) {
        SetLocal(s.targets[0], item);
        return;
      }
      std::vector<Value> parts = Iterate(item, s.line);
      if (parts.size() != s.targets.size()) Fail(s.line, "wrong number of values to unpack in for loop");
      for (size_t k = 0; k < parts.size(); ++k) SetLocal(s.targets[k], parts[k]);
    };
    if (s.filter) {
      // The loop filter runs before `loop` is computed (loop.length counts kept items).
      std::vector<Value> kept;
      for (const Value& item : items) {
        bind(item);
        if (Eval(*s.filter).Truthy()) kept.push_back(item);
      }
      items.swap(kept);
    }
    const size_t n = items.size();
    if (n > kMaxLoopIterations) Fail(s.line, "loop too long");
    Flow result = Flow::kNormal;
    for (size_t k = 0; k < n; ++k) {
      bind(items[k]);
      Value loop = Value::Object({
          {"index", Value::Int(static_cast<int64_t>(k + 1))},
          {"index0", Value::Int(static_cast<int64_t>(k))},
          {"revindex", Value::Int(static_cast<int64_t>(n - k))},
          {"revindex0", Value::Int(static_cast<int64_t>(n - k - 1))},
          {"first", Value::Bool(k == 0)},
          {"last", Value::Bool(k + 1 == n)},
          {"length", Value::Int(static_cast<int64_t>(n))},
          {"previtem", k > 0 ? items[k - 1] : Value::Undefined("previtem")},
          {"nextitem", k + 1 < n ? items[k + 1] : Value::Undefined("nextitem")},
          {"depth", Value::Int(1)},
          {"depth0", Value::Int(0)},
      });
      loop.obj->Set("cycle", Value::Func("cycle", [k](std::vector<Value>& args, Kwargs&) {
        if (args.empty()) throw JinjaError("loop.cycle() needs at least one argument");
        return args[k % args.size()];
      }));
      SetLocal("loop", loop);
      const Flow flow = ExecBody(s.body, out);
      if (flow == Flow::kBreak) break;
    }
    if (n == 0) result = ExecBody(s.else_body, out);
    scopes_.pop_back();
    return result;
  }

  Value Eval(const Expr& e) {
    switch (e.kind) {
      case Expr::Kind::kLiteral:
        return e.value;
      case Expr::Kind::kName:
        return Get(e.name);
      case Expr::Kind::kList:
      case Expr::Kind::kTuple: {
        std::vector<Value> items;
        for (const auto& item : e.items) items.push_back(Eval(*item));
        return Value::Array(std::move(items));
      }
      case Expr::Kind::kDict: {
        Value d = Value::Object({});
        for (size_t k = 0; k + 1 < e.items.size(); k += 2) {
          const Value key = Eval(*e.items[k]);
          d.obj->Set(ToStringValue(key).s, Eval(*e.items[k + 1]));
        }
        return d;
      }
      case Expr::Kind::kAttr: {
        const Value obj = Eval(*e.a);
        if (obj.is_undefined()) Fail(e.line, "'" + obj.s + "' is undefined (accessing ." + e.name + ")");
        if (obj.is_none()) Fail(e.line, "'None' has no attribute '" + e.name + "'");
        return Lookup(obj, e.name);
      }
      case Expr::Kind::kIndex:
        return EvalIndex(e);
      case Expr::Kind::kSlice:
        return EvalSlice(e);
      case Expr::Kind::kCall:
        return EvalCall(e);
      case Expr::Kind::kFilter:
        return EvalFilter(e);
      case Expr::Kind::kTest: {
        const bool r = EvalTest(e);
        return Value::Bool(e.negated ? !r : r);
      }
      case Expr::Kind::kUnary: {
        const Value v = Eval(*e.a);
        if (e.name == "not") return Value::Bool(!v.Truthy());
        if (v.kind == Value::Kind::kInt) return Value::Int(e.name == "-" ? -v.i : v.i);
        if (v.kind == Value::Kind::kFloat) return Value::Float(e.name == "-" ? -v.f : v.f);
        Fail(e.line, std::string("bad operand for unary ") + e.name + ": " + v.TypeName());
      }
      case Expr::Kind::kBinary:
        return EvalBinary(e);
      case Expr::Kind::kCondition: {
        if (Eval(*e.items[1]).Truthy()) return Eval(*e.items[0]);
        return e.items[2] ? Eval(*e.items[2]) : Value::Undefined("else");
      }
    }
    return Value::Undefined();
  }

  Value EvalIndex(const Expr& e) {
    const Value obj = Eval(*e.a);
    const Value key = Eval(*e.b);
    if (obj.is_undefined()) Fail(e.line, "'" + obj.s + "' is undefined (subscripted)");
    if (obj.is_none()) Fail(e.line, "'None' is not subscriptable");
    if (obj.is_object()) {
      if (!key.is_string()) return Value::Undefined();
      return Lookup(obj, key.s);
    }
    if (obj.is_array()) {
      if (key.kind != Value::Kind::kInt) Fail(e.line, "list indices must be integers");
      bool ok;
      const Value idx = Normalize(key.i, obj.arr->items.size(), &ok);
      return ok ? obj.arr->items[static_cast<size_t>(idx.i)] : Value::Undefined("index");
    }
    if (obj.is_string()) {
      if (key.kind != Value::Kind::kInt) Fail(e.line, "string indices must be integers");
      const auto cps = CodePoints(obj.s);
      bool ok;
      const Value idx = Normalize(key.i, cps.size(), &ok);
      if (!ok) return Value::Undefined("index");
      return Derived(FromCodePoints(cps, static_cast<size_t>(idx.i), static_cast<size_t>(idx.i) + 1), {&obj});
    }
    Fail(e.line, std::string("'") + obj.TypeName() + "' object is not subscriptable");
  }

  Value EvalSlice(const Expr& e) {
    const Value obj = Eval(*e.a);
    auto part = [&](size_t k) -> std::optional<int64_t> {
      if (!e.items[k]) return std::nullopt;
      const Value v = Eval(*e.items[k]);
      if (v.is_none()) return std::nullopt;
      return AsInt(v, e.line);
    };
    const auto start = part(0), stop = part(1), step_opt = part(2);
    const int64_t step = step_opt.value_or(1);
    if (step == 0) Fail(e.line, "slice step cannot be zero");
    auto indices = [&](int64_t len) {
      // Python's slice.indices().
      auto clamp = [&](std::optional<int64_t> v, int64_t def) {
        if (!v) return def;
        int64_t x = *v;
        if (x < 0) x += len;
        if (step > 0) return std::clamp<int64_t>(x, 0, len);
        return std::clamp<int64_t>(x, -1, len - 1);
      };
      const int64_t b = clamp(start, step > 0 ? 0 : len - 1);
      const int64_t en = clamp(stop, step > 0 ? len : -1);
      std::vector<int64_t> out;
      for (int64_t k = b; step > 0 ? k < en : k > en; k += step) out.push_back(k);
      return out;
    };
    if (obj.is_array()) {
      std::vector<Value> items;
      for (int64_t k : indices(static_cast<int64_t>(obj.arr->items.size()))) items.push_back(obj.arr->items[k]);
      return Value::Array(std::move(items));
    }
    if (obj.is_string()) {
      const auto cps = CodePoints(obj.s);
      std::string out;
      for (int64_t k : indices(static_cast<int64_t>(cps.size()))) utf8::Append(cps[k], &out);
      return Derived(std::move(out), {&obj});
    }
    Fail(e.line, std::string("cannot slice ") + obj.TypeName());
  }

  void EvalArgs(const Expr& e, std::vector<Value>* args, Kwargs* kwargs) {
    for (const auto& a : e.items) args->push_back(Eval(*a));
    for (const auto& [k, v] : e.kwargs) kwargs->emplace_back(k, Eval(*v));
  }

  Value EvalCall(const Expr& e) {
    std::vector<Value> args;
    Kwargs kwargs;
    if (e.a->kind == Expr::Kind::kAttr) {
      const Value obj = Eval(*e.a->a);
      EvalArgs(e, &args, &kwargs);
      // A callable stored under that key (loop.cycle, a macro in a namespace) wins.
      if (obj.is_object()) {
        const Value* member = obj.obj->Find(e.a->name);
        if (member != nullptr && member->kind == Value::Kind::kFunction) return member->fn->fn(args, kwargs);
      }
      return CallMethod(obj, e.a->name, args, kwargs, e.line);
    }
    const Value callee = Eval(*e.a);
    EvalArgs(e, &args, &kwargs);
    if (callee.kind != Value::Kind::kFunction) {
      Fail(e.line, "'" + (e.a->kind == Expr::Kind::kName ? e.a->name : std::string("value")) + "' is not callable");
    }
    return callee.fn->fn(args, kwargs);
  }

  Value CallMethod(const Value& obj, const std::string& name, std::vector<Value>& args, Kwargs& kwargs, size_t line) {
    if (obj.is_string()) {
      const std::string& s = obj.s;
      if (name == "startswith" || name == "endswith") {
        const Value* arg = Arg(args, kwargs, 0, "prefix");
        if (arg == nullptr) Fail(line, name + "() needs an argument");
        std::vector<Value> options = arg->is_array() ? arg->arr->items : std::vector<Value>{*arg};
        for (const Value& o : options) {
          const std::string& p = AsString(o, line, name.c_str());
          if (name == "startswith" ? s.starts_with(p) : s.ends_with(p)) return Value::Bool(true);
        }
        return Value::Bool(false);
      }
      if (name == "strip" || name == "lstrip" || name == "rstrip") {
        return Derived(Strip(s, Arg(args, kwargs, 0, "chars"), name != "rstrip", name != "lstrip"), {&obj});
      }
      if (name == "upper" || name == "lower") return Derived(AsciiCase(s, name == "upper"), {&obj});
      if (name == "title") return Derived(Title(s), {&obj});
      if (name == "capitalize") return Derived(Capitalize(s), {&obj});
      if (name == "replace") {
        if (args.size() < 2) Fail(line, "replace() needs two arguments");
        const int64_t count = args.size() > 2 ? AsInt(args[2], line) : -1;
        return Derived(ReplaceAll(s, AsString(args[0], line, "replace"), AsString(args[1], line, "replace"), count),
                       {&obj, &args[1]});
      }
      if (name == "split" || name == "rsplit") return Split(obj, args, kwargs, name == "rsplit", line);
      if (name == "splitlines") {
        std::vector<Value> parts;
        size_t pos = 0;
        while (pos < s.size()) {
          size_t nl = s.find_first_of("\r\n", pos);
          if (nl == std::string::npos) nl = s.size();
          parts.push_back(Derived(s.substr(pos, nl - pos), {&obj}));
          pos = nl;
          if (pos < s.size() && s[pos] == '\r' && pos + 1 < s.size() && s[pos + 1] == '\n') ++pos;
          if (pos < s.size()) ++pos;
        }
        return Value::Array(std::move(parts));
      }
      if (name == "find" || name == "count") {
        if (args.empty()) Fail(line, name + "() needs an argument");
        const std::string& needle = AsString(args[0], line, name.c_str());
        if (name == "find") {
          const size_t hit = s.find(needle);
          return Value::Int(hit == std::string::npos ? -1 : static_cast<int64_t>(utf8::Length(std::string_view(s).substr(0, hit))));
        }
        if (needle.empty()) return Value::Int(static_cast<int64_t>(utf8::Length(s) + 1));
        int64_t n = 0;
        for (size_t pos = s.find(needle); pos != std::string::npos; pos = s.find(needle, pos + needle.size())) ++n;
        return Value::Int(n);
      }
      if (name == "join") {
        if (args.empty()) Fail(line, "join() needs an argument");
        Value out = Value::String("");
        bool first = true;
        for (const Value& item : Iterate(args[0], line)) {
          if (!first) out = Concat(out, obj);
          first = false;
          out = Concat(out, ToStringValue(item));
        }
        return out;
      }
      if (name == "removeprefix" || name == "removesuffix") {
        if (args.empty()) Fail(line, name + "() needs an argument");
        const std::string& a = AsString(args[0], line, name.c_str());
        if (name == "removeprefix" && s.starts_with(a)) return Derived(s.substr(a.size()), {&obj});
        if (name == "removesuffix" && s.ends_with(a) && !a.empty()) return Derived(s.substr(0, s.size() - a.size()), {&obj});
        return obj;
      }
      if (name.starts_with("is")) {
        const auto cps = CodePoints(s);
        if (cps.empty()) return Value::Bool(false);
        bool all = true;
        bool any_cased = false;
        for (char32_t c : cps) {
          const bool ascii = c < 0x80;
          const int ch = static_cast<int>(c);
          if (name == "isdigit") all = all && ascii && std::isdigit(ch);
          if (name == "isalpha") all = all && ascii && std::isalpha(ch);
          if (name == "isalnum") all = all && ascii && std::isalnum(ch);
          if (name == "isspace") all = all && IsPySpace(c);
          if (name == "islower") {
            all = all && !(ascii && std::isupper(ch));
            any_cased = any_cased || (ascii && std::islower(ch));
          }
          if (name == "isupper") {
            all = all && !(ascii && std::islower(ch));
            any_cased = any_cased || (ascii && std::isupper(ch));
          }
        }
        if (name == "islower" || name == "isupper") return Value::Bool(all && any_cased);
        return Value::Bool(all);
      }
    }
    if (obj.is_object() && !obj.obj->is_namespace) {
      if (name == "items") {
        std::vector<Value> items;
        for (const auto& [k, v] : obj.obj->items) {
          items.push_back(Value::Array({Value::String(k, obj.obj->tainted_keys), v}));
        }
        return Value::Array(std::move(items));
      }
      if (name == "keys") {
        std::vector<Value> items;
        for (const auto& [k, v] : obj.obj->items) items.push_back(Value::String(k, obj.obj->tainted_keys));
        return Value::Array(std::move(items));
      }
      if (name == "values") {
        std::vector<Value> items;
        for (const auto& [k, v] : obj.obj->items) items.push_back(v);
        return Value::Array(std::move(items));
      }
      if (name == "get") {
        if (args.empty()) Fail(line, "get() needs a key");
        if (args[0].is_string()) {
          const Value* found = obj.obj->Find(args[0].s);
          if (found != nullptr) return *found;
        }
        return args.size() > 1 ? args[1] : Value::None();
      }
    }
    if (obj.is_undefined()) Fail(line, "'" + obj.s + "' is undefined (calling ." + name + "())");
    Fail(line, std::string("'") + obj.TypeName() + "' object has no method '" + name + "'");
  }

  Value Split(const Value& obj, std::vector<Value>& args, Kwargs& kwargs, bool from_right, size_t line) {
    const std::string& s = obj.s;
    const Value* sep = Arg(args, kwargs, 0, "sep");
    const Value* maxsplit_v = Arg(args, kwargs, 1, "maxsplit");
    int64_t maxsplit = maxsplit_v != nullptr ? AsInt(*maxsplit_v, line) : -1;
    std::vector<std::string> parts;
    if (sep == nullptr || sep->is_none()) {
      // Whitespace split: runs of whitespace separate, no empty strings.
      const auto cps = CodePoints(s);
      std::vector<std::pair<size_t, size_t>> words;
      size_t k = 0;
      while (k < cps.size()) {
        while (k < cps.size() && IsPySpace(cps[k])) ++k;
        if (k >= cps.size()) break;
        size_t b = k;
        while (k < cps.size() && !IsPySpace(cps[k])) ++k;
        words.emplace_back(b, k);
      }
      if (maxsplit >= 0 && static_cast<int64_t>(words.size()) > maxsplit + 1) {
        if (!from_right) {
          for (int64_t w = 0; w < maxsplit; ++w) parts.push_back(FromCodePoints(cps, words[w].first, words[w].second));
          size_t rest = words[maxsplit].first;
          size_t end = cps.size();
          while (end > rest && IsPySpace(cps[end - 1])) --end;
          parts.push_back(FromCodePoints(cps, rest, end));
        } else {
          const size_t first_kept = words.size() - static_cast<size_t>(maxsplit);
          size_t b = 0;
          while (b < cps.size() && IsPySpace(cps[b])) ++b;
          parts.push_back(FromCodePoints(cps, b, words[first_kept - 1].second));
          for (size_t w = first_kept; w < words.size(); ++w) parts.push_back(FromCodePoints(cps, words[w].first, words[w].second));
        }
      } else {
        for (const auto& [b, en] : words) parts.push_back(FromCodePoints(cps, b, en));
      }
    } else {
      const std::string& d = AsString(*sep, line, "split");
      if (d.empty()) Fail(line, "empty separator");
      if (!from_right) {
        size_t pos = 0;
        while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
          const size_t hit = s.find(d, pos);
          if (hit == std::string::npos) break;
          parts.push_back(s.substr(pos, hit - pos));
          pos = hit + d.size();
        }
        parts.push_back(s.substr(pos));
      } else {
        std::vector<std::string> rev;
        size_t end = s.size();
        while (maxsplit < 0 || static_cast<int64_t>(rev.size()) < maxsplit) {
          if (end < d.size()) break;
          const size_t hit = s.rfind(d, end - d.size());
          if (hit == std::string::npos) break;
          rev.push_back(s.substr(hit + d.size(), end - hit - d.size()));
          end = hit;
        }
        rev.push_back(s.substr(0, end));
        parts.assign(rev.rbegin(), rev.rend());
      }
    }
    std::vector<Value> out;
    for (auto& p : parts) out.push_back(Derived(std::move(p), {&obj}));
    return Value::Array(std::move(out));
  }

  bool ApplyTest(const std::string& name, const Value& v, const std::vector<Value>& args, size_t line) {
    auto arg0 = [&]() -> const Value& {
      if (args.empty()) Fail(line, "test '" + name + "' needs an argument");
      return args[0];
    };
    if (name == "defined") return !v.is_undefined();
    if (name == "undefined") return v.is_undefined();
    if (name == "none") return v.is_none();
    if (name == "string") return v.is_string();
    if (name == "number") return v.is_number() || v.kind == Value::Kind::kBool;
    if (name == "integer") return v.kind == Value::Kind::kInt;
    if (name == "float") return v.kind == Value::Kind::kFloat;
    if (name == "boolean") return v.kind == Value::Kind::kBool;
    if (name == "true") return v.kind == Value::Kind::kBool && v.b;
    if (name == "false") return v.kind == Value::Kind::kBool && !v.b;
    if (name == "mapping") return v.is_object();
    if (name == "iterable") return v.is_array() || v.is_object() || v.is_string();
    if (name == "sequence") return v.is_array() || v.is_object() || v.is_string();
    if (name == "callable") return v.kind == Value::Kind::kFunction;
    if (name == "odd") return AsInt(v, line) % 2 != 0;
    if (name == "even") return AsInt(v, line) % 2 == 0;
    if (name == "divisibleby") {
      const int64_t d = AsInt(arg0(), line);
      if (d == 0) Fail(line, "divisibleby 0");
      return AsInt(v, line) % d == 0;
    }
    if (name == "eq" || name == "equalto") return Equals(v, arg0());
    if (name == "ne") return !Equals(v, arg0());
    if (name == "lt") return Compare(v, arg0(), line) < 0;
    if (name == "gt") return Compare(v, arg0(), line) > 0;
    if (name == "le") return Compare(v, arg0(), line) <= 0;
    if (name == "ge") return Compare(v, arg0(), line) >= 0;
    if (name == "in") return Contains(arg0(), v, line);
    if (name == "lower") return v.is_string() && AsciiCase(v.s, false) == v.s;
    if (name == "upper") return v.is_string() && AsciiCase(v.s, true) == v.s;
    Fail(line, "unsupported test '" + name + "'");
  }

  bool EvalTest(const Expr& e) {
    const Value v = Eval(*e.a);
    std::vector<Value> args;
    Kwargs kwargs;
    EvalArgs(e, &args, &kwargs);
    return ApplyTest(e.name, v, args, e.line);
  }

  bool Contains(const Value& container, const Value& item, size_t line) {
    if (container.is_string()) return container.s.find(AsString(item, line, "'in <string>'")) != std::string::npos;
    if (container.is_array()) {
      for (const Value& x : container.arr->items) {
        if (Equals(x, item)) return true;
      }
      return false;
    }
    if (container.is_object()) return item.is_string() && container.obj->Find(item.s) != nullptr;
    if (container.is_undefined()) return false;
    Fail(line, std::string("argument of type '") + container.TypeName() + "' is not iterable");
  }

  Value Arith(const std::string& op, const Value& a, const Value& b, size_t line) {
    const bool ints = (a.kind == Value::Kind::kInt || a.kind == Value::Kind::kBool) &&
                      (b.kind == Value::Kind::kInt || b.kind == Value::Kind::kBool);
    const bool nums = (a.is_number() || a.kind == Value::Kind::kBool) && (b.is_number() || b.kind == Value::Kind::kBool);
    if (op == "+") {
      if (a.is_string() && b.is_string()) return Concat(a, b);
      if (a.is_array() && b.is_array()) {
        std::vector<Value> items = a.arr->items;
        items.insert(items.end(), b.arr->items.begin(), b.arr->items.end());
        return Value::Array(std::move(items));
      }
    }
    if (op == "*" && (a.is_string() || b.is_string()) && (a.kind == Value::Kind::kInt || b.kind == Value::Kind::kInt)) {
      const Value& str = a.is_string() ? a : b;
      const int64_t n = a.is_string() ? b.i : a.i;
      if (n > 0 && str.s.size() * static_cast<size_t>(n) > kMaxOutputBytes) Fail(line, "string repetition too large");
      std::string out;
      for (int64_t k = 0; k < n; ++k) out += str.s;
      return Derived(std::move(out), {&str});
    }
    if (!nums) {
      Fail(line, std::string("unsupported operand types for ") + op + ": '" + a.TypeName() + "' and '" + b.TypeName() + "'");
    }
    if (ints) {
      const int64_t x = AsInt(a, line), y = AsInt(b, line);
      if (op == "+") return Value::Int(x + y);
      if (op == "-") return Value::Int(x - y);
      if (op == "*") return Value::Int(x * y);
      if (op == "/") {
        if (y == 0) Fail(line, "division by zero");
        return Value::Float(static_cast<double>(x) / static_cast<double>(y));
      }
      if (op == "//" || op == "%") {
        if (y == 0) Fail(line, "division by zero");
        int64_t q = x / y;
        if ((x % y != 0) && ((x < 0) != (y < 0))) --q;  // floor division
        return op == "//" ? Value::Int(q) : Value::Int(x - q * y);
      }
      if (op == "**") {
        if (y < 0) return Value::Float(std::pow(static_cast<double>(x), static_cast<double>(y)));
        int64_t r = 1;
        for (int64_t k = 0; k < y && k < 64; ++k) r *= x;
        return Value::Int(r);
      }
    }
    const double x = AsDouble(a, line), y = AsDouble(b, line);
    if (op == "+") return Value::Float(x + y);
    if (op == "-") return Value::Float(x - y);
    if (op == "*") return Value::Float(x * y);
    if (op == "/") {
      if (y == 0) Fail(line, "division by zero");
      return Value::Float(x / y);
    }
    if (op == "//") {
      if (y == 0) Fail(line, "division by zero");
      return Value::Float(std::floor(x / y));
    }
    if (op == "%") {
      if (y == 0) Fail(line, "division by zero");
      return Value::Float(x - std::floor(x / y) * y);
    }
    if (op == "**") return Value::Float(std::pow(x, y));
    Fail(line, "unknown operator " + op);
  }

  Value EvalBinary(const Expr& e) {
    const std::string& op = e.name;
    if (op == "and") {
      Value a = Eval(*e.a);
      return a.Truthy() ? Eval(*e.b) : a;
    }
    if (op == "or") {
      Value a = Eval(*e.a);
      return a.Truthy() ? a : Eval(*e.b);
    }
    const Value a = Eval(*e.a);
    const Value b = Eval(*e.b);
    if (op == "==") return Value::Bool(Equals(a, b));
    if (op == "!=") return Value::Bool(!Equals(a, b));
    if (op == "<") return Value::Bool(Compare(a, b, e.line) < 0);
    if (op == ">") return Value::Bool(Compare(a, b, e.line) > 0);
    if (op == "<=") return Value::Bool(Compare(a, b, e.line) <= 0);
    if (op == ">=") return Value::Bool(Compare(a, b, e.line) >= 0);
    if (op == "in") return Value::Bool(Contains(b, a, e.line));
    if (op == "not in") return Value::Bool(!Contains(b, a, e.line));
    if (op == "~") return Concat(ToStringValue(a), ToStringValue(b));
    if (a.is_undefined() || b.is_undefined()) {
      Fail(e.line, "'" + (a.is_undefined() ? a.s : b.s) + "' is undefined (operator " + op + ")");
    }
    return Arith(op, a, b, e.line);
  }

  // Attribute (dotted path) of an item, for map/sort/selectattr.
  Value Attribute(const Value& item, const std::string& path) {
    Value cur = item;
    size_t pos = 0;
    while (pos <= path.size()) {
      size_t dot = path.find('.', pos);
      if (dot == std::string::npos) dot = path.size();
      const std::string part = path.substr(pos, dot - pos);
      if (cur.is_array() && !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit)) {
        const size_t idx = std::stoul(part);
        cur = idx < cur.arr->items.size() ? cur.arr->items[idx] : Value::Undefined(part);
      } else {
        cur = Lookup(cur, part);
      }
      pos = dot + 1;
    }
    return cur;
  }

  Value EvalFilter(const Expr& e) {
    const Value v = Eval(*e.a);
    std::vector<Value> args;
    Kwargs kwargs;
    EvalArgs(e, &args, &kwargs);
    const std::string& f = e.name;
    const size_t line = e.line;
    if (f == "default" || f == "d") {
      const Value* boolean = Arg(args, kwargs, 1, "boolean");
      const bool use_default = v.is_undefined() || (boolean != nullptr && boolean->Truthy() && !v.Truthy());
      if (!use_default) return v;
      const Value* def = Arg(args, kwargs, 0, "default_value");
      return def != nullptr ? *def : Value::String("");
    }
    if (f == "safe") return v;
    if (f == "string") return ToStringValue(v);
    if (f == "tojson") {
      const Value* indent = Arg(args, kwargs, 0, "indent");
      const Value* sort_keys = Kwarg(kwargs, "sort_keys");
      const int ind = indent != nullptr && !indent->is_none() ? static_cast<int>(AsInt(*indent, line)) : 0;
      return Derived(ToJson(v, ind, sort_keys != nullptr && sort_keys->Truthy()), {&v});
    }
    if (f == "length" || f == "count") {
      if (v.is_string()) return Value::Int(static_cast<int64_t>(utf8::Length(v.s)));
      if (v.is_array()) return Value::Int(static_cast<int64_t>(v.arr->items.size()));
      if (v.is_object()) return Value::Int(static_cast<int64_t>(v.obj->items.size()));
      if (v.is_undefined()) return Value::Int(0);
      Fail(line, std::string("object of type '") + v.TypeName() + "' has no len()");
    }
    if (f == "trim") {
      if (!v.is_string()) return Derived(Strip(ToStringValue(v).s, Arg(args, kwargs, 0, "chars"), true, true), {&v});
      return Derived(Strip(v.s, Arg(args, kwargs, 0, "chars"), true, true), {&v});
    }
    if (f == "upper" || f == "lower") return Derived(AsciiCase(ToStringValue(v).s, f == "upper"), {&v});
    if (f == "title") return Derived(Title(ToStringValue(v).s), {&v});
    if (f == "capitalize") return Derived(Capitalize(ToStringValue(v).s), {&v});
    if (f == "replace") {
      if (args.size() < 2) Fail(line, "replace needs two arguments");
      const int64_t count = args.size() > 2 ? AsInt(args[2], line) : -1;
      return Derived(ReplaceAll(ToStringValue(v).s, ToStringValue(args[0]).s, ToStringValue(args[1]).s, count),
                     {&v, &args[1]});
    }
    if (f == "e" || f == "escape") {
      std::string out;
      for (char c : ToStringValue(v).s) {
        switch (c) {
          case '&': out += "&amp;"; break;
          case '<': out += "&lt;"; break;
          case '>': out += "&gt;"; break;
          case '"': out += "&#34;"; break;
          case '\'': out += "&#39;"; break;
          default: out.push_back(c);
        }
      }
      return Derived(std::move(out), {&v});
    }
    if (f == "join") {
      const Value* sep_v = Arg(args, kwargs, 0, "d");
      const Value sep = sep_v != nullptr ? ToStringValue(*sep_v) : Value::String("");
      const Value* attr = Arg(args, kwargs, 1, "attribute");
      Value out = Value::String("");
      bool first = true;
      for (const Value& item : Iterate(v, line)) {
        if (!first) out = Concat(out, sep);
        first = false;
        out = Concat(out, ToStringValue(attr != nullptr ? Attribute(item, ToStringValue(*attr).s) : item));
      }
      return out;
    }
    if (f == "first" || f == "last") {
      std::vector<Value> items = Iterate(v, line);
      if (items.empty()) return Value::Undefined(f);
      return f == "first" ? items.front() : items.back();
    }
    if (f == "list") return Value::Array(Iterate(v, line));
    if (f == "items") {
      if (v.is_undefined()) return Value::Array({});
      if (!v.is_object()) Fail(line, "items filter expects a mapping");
      std::vector<Value> out;
      for (const auto& [k, x] : v.obj->items) out.push_back(Value::Array({Value::String(k, v.obj->tainted_keys), x}));
      return Value::Array(std::move(out));
    }
    if (f == "dictsort") {
      if (!v.is_object()) Fail(line, "dictsort expects a mapping");
      std::vector<Value> out;
      for (const auto& [k, x] : v.obj->items) out.push_back(Value::Array({Value::String(k, v.obj->tainted_keys), x}));
      std::stable_sort(out.begin(), out.end(), [&](const Value& a, const Value& b) {
        return AsciiCase(a.arr->items[0].s, false) < AsciiCase(b.arr->items[0].s, false);
      });
      return Value::Array(std::move(out));
    }
    if (f == "reverse") {
      if (v.is_string()) {
        auto cps = CodePoints(v.s);
        std::reverse(cps.begin(), cps.end());
        return Derived(FromCodePoints(cps, 0, cps.size()), {&v});
      }
      std::vector<Value> items = Iterate(v, line);
      std::reverse(items.begin(), items.end());
      return Value::Array(std::move(items));
    }
    if (f == "sort" || f == "unique" || f == "min" || f == "max") {
      std::vector<Value> items = Iterate(v, line);
      const Value* attr = Kwarg(kwargs, "attribute");
      const Value* cs = Kwarg(kwargs, "case_sensitive");
      const bool case_sensitive = cs != nullptr && cs->Truthy();
      auto key = [&](const Value& item) {
        Value k = attr != nullptr ? Attribute(item, ToStringValue(*attr).s) : item;
        if (k.is_string() && !case_sensitive) k.s = AsciiCase(k.s, false);
        return k;
      };
      if (f == "unique") {
        std::vector<Value> out;
        std::vector<Value> keys;
        for (const Value& item : items) {
          const Value k = key(item);
          if (std::none_of(keys.begin(), keys.end(), [&](const Value& x) { return Equals(x, k); })) {
            keys.push_back(k);
            out.push_back(item);
          }
        }
        return Value::Array(std::move(out));
      }
      const Value* rev = f == "sort" ? Arg(args, kwargs, 0, "reverse") : nullptr;
      const bool reverse = rev != nullptr && rev->Truthy();
      std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
        const int c = Compare(key(a), key(b), line);
        return reverse ? c > 0 : c < 0;
      });
      if (f == "sort") return Value::Array(std::move(items));
      if (items.empty()) return Value::Undefined(f);
      return f == "min" ? items.front() : items.back();
    }
    if (f == "sum") {
      Value total = Value::Int(0);
      const Value* attr = Kwarg(kwargs, "attribute");
      for (const Value& item : Iterate(v, line)) {
        total = Arith("+", total, attr != nullptr ? Attribute(item, ToStringValue(*attr).s) : item, line);
      }
      return total;
    }
    if (f == "abs") {
      if (v.kind == Value::Kind::kInt) return Value::Int(v.i < 0 ? -v.i : v.i);
      return Value::Float(std::fabs(AsDouble(v, line)));
    }
    if (f == "int") {
      const Value* def = Arg(args, kwargs, 0, "default");
      if (v.kind == Value::Kind::kInt) return v;
      if (v.kind == Value::Kind::kFloat) return Value::Int(static_cast<int64_t>(v.f));
      if (v.kind == Value::Kind::kBool) return Value::Int(v.b ? 1 : 0);
      if (v.is_string()) {
        try {
          size_t used = 0;
          const std::string t = Strip(v.s, nullptr, true, true);
          const int64_t x = std::stoll(t, &used);
          if (used == t.size()) return Value::Int(x);
        } catch (const std::exception&) {
        }
      }
      return def != nullptr ? *def : Value::Int(0);
    }
    if (f == "float") {
      const Value* def = Arg(args, kwargs, 0, "default");
      if (v.is_number() || v.kind == Value::Kind::kBool) return Value::Float(AsDouble(v, line));
      if (v.is_string()) {
        try {
          size_t used = 0;
          const std::string t = Strip(v.s, nullptr, true, true);
          const double x = std::stod(t, &used);
          if (used == t.size()) return Value::Float(x);
        } catch (const std::exception&) {
        }
      }
      return def != nullptr ? *def : Value::Float(0);
    }
    if (f == "round") {
      const Value* prec = Arg(args, kwargs, 0, "precision");
      const Value* method = Arg(args, kwargs, 1, "method");
      const int64_t p = prec != nullptr ? AsInt(*prec, line) : 0;
      const std::string m = method != nullptr ? ToStringValue(*method).s : "common";
      const double scale = std::pow(10.0, static_cast<double>(p));
      const double x = AsDouble(v, line) * scale;
      const double r = m == "ceil" ? std::ceil(x) : m == "floor" ? std::floor(x) : std::round(x);
      return Value::Float(r / scale);
    }
    if (f == "indent") {
      const Value* width_v = Arg(args, kwargs, 0, "width");
      const Value* first_v = Arg(args, kwargs, 1, "first");
      const Value* blank_v = Arg(args, kwargs, 2, "blank");
      const std::string pad = width_v != nullptr && width_v->is_string()
                                  ? width_v->s
                                  : std::string(static_cast<size_t>(width_v != nullptr ? AsInt(*width_v, line) : 4), ' ');
      const bool first = first_v != nullptr && first_v->Truthy();
      const bool blank = blank_v != nullptr && blank_v->Truthy();
      const std::string s = ToStringValue(v).s;
      std::string out;
      size_t pos = 0;
      bool first_line = true;
      while (pos <= s.size()) {
        size_t nl = s.find('\n', pos);
        const bool last = nl == std::string::npos;
        if (last) nl = s.size();
        const std::string lineText = s.substr(pos, nl - pos);
        const bool add = first_line ? first : (blank || !lineText.empty());
        if (add) out += pad;
        out += lineText;
        if (!last) out += "\n";
        first_line = false;
        pos = nl + 1;
        if (last) break;
      }
      return Derived(std::move(out), {&v});
    }
    if (f == "wordcount") {
      const Value s = ToStringValue(v);
      std::vector<Value> none;
      Kwargs nokw;
      return Value::Int(static_cast<int64_t>(Split(s, none, nokw, false, line).arr->items.size()));
    }
    if (f == "map") {
      std::vector<Value> out;
      const Value* attr = Kwarg(kwargs, "attribute");
      const Value* def = Kwarg(kwargs, "default");
      for (const Value& item : Iterate(v, line)) {
        if (attr != nullptr) {
          Value x = Attribute(item, ToStringValue(*attr).s);
          if (x.is_undefined() && def != nullptr) x = *def;
          out.push_back(x);
        } else {
          if (args.empty()) Fail(line, "map needs a filter name or attribute=");
          const std::string name = ToStringValue(args[0]).s;
          if (!IsKnownFilter(name) || name == "map") Fail(line, "map: unsupported filter '" + name + "'");
          auto inner = std::make_unique<Expr>();
          inner->kind = Expr::Kind::kFilter;
          inner->name = name;
          inner->line = line;
          auto lit = std::make_unique<Expr>();
          lit->kind = Expr::Kind::kLiteral;
          lit->value = item;
          inner->a = std::move(lit);
          for (size_t k = 1; k < args.size(); ++k) {
            auto a = std::make_unique<Expr>();
            a->kind = Expr::Kind::kLiteral;
            a->value = args[k];
            inner->items.push_back(std::move(a));
          }
          out.push_back(EvalFilter(*inner));
        }
      }
      return Value::Array(std::move(out));
    }
    if (f == "select" || f == "reject" || f == "selectattr" || f == "rejectattr") {
      const bool by_attr = f == "selectattr" || f == "rejectattr";
      const bool keep_if = f == "select" || f == "selectattr";
      size_t k = 0;
      std::string attr;
      if (by_attr) {
        if (args.empty()) Fail(line, f + " needs an attribute name");
        attr = ToStringValue(args[k++]).s;
      }
      std::string test;
      if (k < args.size()) test = ToStringValue(args[k++]).s;
      if (!test.empty() && !IsKnownTest(test)) Fail(line, f + ": unsupported test '" + test + "'");
      std::vector<Value> test_args(args.begin() + static_cast<std::ptrdiff_t>(std::min(k, args.size())), args.end());
      std::vector<Value> out;
      for (const Value& item : Iterate(v, line)) {
        const Value subject = by_attr ? Attribute(item, attr) : item;
        const bool r = test.empty() ? subject.Truthy() : ApplyTest(test, subject, test_args, line);
        if (r == keep_if) out.push_back(item);
      }
      return Value::Array(std::move(out));
    }
    Fail(line, "unsupported filter '" + f + "'");
  }

  std::vector<std::shared_ptr<Scope>> scopes_;
  int depth_ = 0;
};

}  // namespace

StatusOr<std::unique_ptr<JinjaTemplate>> JinjaTemplate::Parse(std::string_view source) {
  auto t = std::unique_ptr<JinjaTemplate>(new JinjaTemplate());
  try {
    t->body_ = jinja::Parse(source);
  } catch (const JinjaError& e) {
    return InvalidArgument("chat_template", e.what());
  } catch (const std::exception& e) {
    return InvalidArgument("chat_template", std::string("cannot parse template: ") + e.what());
  }
  return t;
}

StatusOr<RenderResult> JinjaTemplate::Render(const std::vector<std::pair<std::string, Value>>& context) const {
  try {
    Renderer renderer(context);
    Output out;
    renderer.Exec(body_, &out);
    return RenderResult{std::move(out.text), std::move(out.tainted)};
  } catch (const JinjaError& e) {
    return InvalidArgument("chat_template", e.what());
  } catch (const std::exception& e) {
    return Internal("chat_template", std::string("render failed: ") + e.what());
  }
}

}  // namespace dsv3::jinja
