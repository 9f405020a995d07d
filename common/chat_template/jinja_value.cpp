#include "common/chat_template/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "nlohmann/json.hpp"

namespace dsv3::jinja {

Value Value::Undefined(std::string hint) {
  Value v;
  v.kind = Kind::kUndefined;
  v.s = std::move(hint);
  return v;
}
Value Value::None() {
  Value v;
  v.kind = Kind::kNone;
  return v;
}
Value Value::Bool(bool b) {
  Value v;
  v.kind = Kind::kBool;
  v.b = b;
  return v;
}
Value Value::Int(int64_t i) {
  Value v;
  v.kind = Kind::kInt;
  v.i = i;
  return v;
}
Value Value::Float(double f) {
  Value v;
  v.kind = Kind::kFloat;
  v.f = f;
  return v;
}
Value Value::String(std::string s, bool tainted) {
  Value v;
  v.kind = Kind::kString;
  if (tainted && !s.empty()) v.taint.emplace_back(0, static_cast<uint32_t>(s.size()));
  v.s = std::move(s);
  return v;
}
Value Value::Array(std::vector<Value> items) {
  Value v;
  v.kind = Kind::kArray;
  auto data = std::make_shared<ArrayData>();
  data->items = std::move(items);
  v.arr = std::move(data);
  return v;
}
Value Value::Object(std::vector<std::pair<std::string, Value>> items, bool namespace_object) {
  Value v;
  v.kind = Kind::kObject;
  v.obj = std::make_shared<ObjectData>();
  v.obj->items = std::move(items);
  v.obj->is_namespace = namespace_object;
  return v;
}
Value Value::Func(std::string name,
                  std::function<Value(std::vector<Value>&, std::vector<std::pair<std::string, Value>>&)> fn) {
  Value v;
  v.kind = Kind::kFunction;
  auto f = std::make_shared<Function>();
  f->name = std::move(name);
  f->fn = std::move(fn);
  v.fn = std::move(f);
  return v;
}

Value Value::FromJson(const nlohmann::ordered_json& j, bool tainted) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null:
      return None();
    case nlohmann::ordered_json::value_t::boolean:
      return Bool(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return Int(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      const auto u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return Float(static_cast<double>(u));
      return Int(static_cast<int64_t>(u));
    }
    case nlohmann::ordered_json::value_t::number_float:
      return Float(j.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return String(j.get<std::string>(), tainted);
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(FromJson(e, tainted));
      return Array(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      std::vector<std::pair<std::string, Value>> items;
      for (const auto& [k, e] : j.items()) items.emplace_back(k, FromJson(e, tainted));
      Value v = Object(std::move(items));
      v.obj->tainted_keys = tainted;
      return v;
    }
    default:
      return None();
  }
}

bool Value::Truthy() const {
  switch (kind) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
      return b;
    case Kind::kInt:
      return i != 0;
    case Kind::kFloat:
      return f != 0.0;
    case Kind::kString:
      return !s.empty();
    case Kind::kArray:
      return !arr->items.empty();
    case Kind::kObject:
      return obj->is_namespace || !obj->items.empty();
    case Kind::kFunction:
      return true;
  }
  return false;
}

const char* Value::TypeName() const {
  switch (kind) {
    case Kind::kUndefined:
      return "undefined";
    case Kind::kNone:
      return "none";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kFloat:
      return "float";
    case Kind::kString:
      return "string";
    case Kind::kArray:
      return "list";
    case Kind::kObject:
      return "dict";
    case Kind::kFunction:
      return "function";
  }
  return "?";
}

const Value* ObjectData::Find(std::string_view key) const {
  for (const auto& [k, v] : items) {
    if (k == key) return &v;
  }
  return nullptr;
}

void ObjectData::Set(const std::string& key, Value v) {
  for (auto& [k, existing] : items) {
    if (k == key) {
      existing = std::move(v);
      return;
    }
  }
  items.emplace_back(key, std::move(v));
}

std::string FormatFloat(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buf[64];
  // Shortest representation that round-trips, as Python's repr().
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), d);
  std::string s(buf, end);
  // Python uses exponent notation only below 1e-4 or from 1e16; to_chars picks by length.
  const double a = std::fabs(d);
  if (a != 0 && (a < 1e-4 || a >= 1e16)) {
    auto [e2, ec2] = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
    s.assign(buf, e2);
    // Python writes e-05 / e+16: at least two exponent digits and an explicit sign.
    const size_t epos = s.find('e');
    std::string mant = s.substr(0, epos);
    std::string exp = s.substr(epos + 1);
    char sign = '+';
    if (!exp.empty() && (exp[0] == '-' || exp[0] == '+')) {
      sign = exp[0];
      exp = exp.substr(1);
    }
    if (exp.size() < 2) exp = "0" + exp;
    return mant + "e" + sign + exp;
  }
  auto [e3, ec3] = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::fixed);
  s.assign(buf, e3);
  if (s.find('.') == std::string::npos) s += ".0";
  return s;
}

namespace {

void AppendJsonString(std::string_view s, std::string* out) {
  out->push_back('"');
  for (char c : s) {
    switch (c) {
      case '"':
        *out += "\\\"";
        break;
      case '\\':
        *out += "\\\\";
        break;
      case '\n':
        *out += "\\n";
        break;
      case '\r':
        *out += "\\r";
        break;
      case '\t':
        *out += "\\t";
        break;
      case '\b':
        *out += "\\b";
        break;
      case '\f':
        *out += "\\f";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned char>(c));
          *out += buf;
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

std::string ReprString(const std::string& s) {
  // Python prefers single quotes unless the string contains one and no double quote.
  const bool use_double = s.find('\'') != std::string::npos && s.find('"') == std::string::npos;
  const char q = use_double ? '"' : '\'';
  std::string out(1, q);
  for (char c : s) {
    if (c == q || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      out.push_back(c);
    }
  }
  out.push_back(q);
  return out;
}

}  // namespace

std::string Repr(const Value& v) {
  if (v.is_string()) return ReprString(v.s);
  return ToStringValue(v).s;
}

Value ToStringValue(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined:
      return Value::String("");
    case Value::Kind::kNone:
      return Value::String("None");
    case Value::Kind::kBool:
      return Value::String(v.b ? "True" : "False");
    case Value::Kind::kInt:
      return Value::String(std::to_string(v.i));
    case Value::Kind::kFloat:
      return Value::String(FormatFloat(v.f));
    case Value::Kind::kString:
      return v;
    case Value::Kind::kArray: {
      std::string out = "[";
      for (size_t k = 0; k < v.arr->items.size(); ++k) {
        if (k > 0) out += ", ";
        out += Repr(v.arr->items[k]);
      }
      out += "]";
      return Derived(std::move(out), {&v});
    }
    case Value::Kind::kObject: {
      if (v.obj->is_namespace) return Value::String("<Namespace>");
      std::string out = "{";
      for (size_t k = 0; k < v.obj->items.size(); ++k) {
        if (k > 0) out += ", ";
        out += ReprString(v.obj->items[k].first) + ": " + Repr(v.obj->items[k].second);
      }
      out += "}";
      return Derived(std::move(out), {&v});
    }
    case Value::Kind::kFunction:
      return Value::String("<function " + v.fn->name + ">");
  }
  return Value::String("");
}

std::string ToJson(const Value& v, int indent, bool sort_keys, int depth) {
  const std::string item_sep = indent > 0 ? "," : ", ";
  std::string pad, end_pad;
  if (indent > 0) {
    pad.push_back('\n');
    pad.append(static_cast<size_t>(indent) * static_cast<size_t>(depth + 1), ' ');
    end_pad.push_back('\n');
    end_pad.append(static_cast<size_t>(indent) * static_cast<size_t>(depth), ' ');
  }
  switch (v.kind) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return "null";
    case Value::Kind::kBool:
      return v.b ? "true" : "false";
    case Value::Kind::kInt:
      return std::to_string(v.i);
    case Value::Kind::kFloat: {
      if (std::isnan(v.f)) return "NaN";
      if (std::isinf(v.f)) return v.f > 0 ? "Infinity" : "-Infinity";
      return FormatFloat(v.f);
    }
    case Value::Kind::kString: {
      std::string out;
      AppendJsonString(v.s, &out);
      return out;
    }
    case Value::Kind::kArray: {
      if (v.arr->items.empty()) return "[]";
      std::string out = "[";
      for (size_t k = 0; k < v.arr->items.size(); ++k) {
        if (k > 0) out += item_sep;
        out += pad + ToJson(v.arr->items[k], indent, sort_keys, depth + 1);
      }
      return out + end_pad + "]";
    }
    case Value::Kind::kObject: {
      if (v.obj->items.empty()) return "{}";
      std::vector<const std::pair<std::string, Value>*> entries;
      for (const auto& e : v.obj->items) entries.push_back(&e);
      if (sort_keys) {
        std::stable_sort(entries.begin(), entries.end(), [](auto* a, auto* b) { return a->first < b->first; });
      }
      std::string out = "{";
      for (size_t k = 0; k < entries.size(); ++k) {
        if (k > 0) out += item_sep;
        out += pad;
        AppendJsonString(entries[k]->first, &out);
        out += ": " + ToJson(entries[k]->second, indent, sort_keys, depth + 1);
      }
      return out + end_pad + "}";
    }
    case Value::Kind::kFunction:
      throw JinjaError("tojson: cannot serialize a function");
  }
  return "null";
}

bool Equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.kind == Value::Kind::kInt && b.kind == Value::Kind::kInt) return a.i == b.i;
    const double x = a.kind == Value::Kind::kInt ? static_cast<double>(a.i) : a.f;
    const double y = b.kind == Value::Kind::kInt ? static_cast<double>(b.i) : b.f;
    return x == y;
  }
  // Python: True == 1; keep bools separate from strings but comparable to numbers.
  if (a.kind == Value::Kind::kBool && b.is_number()) return Equals(Value::Int(a.b ? 1 : 0), b);
  if (b.kind == Value::Kind::kBool && a.is_number()) return Equals(a, Value::Int(b.b ? 1 : 0));
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return true;
    case Value::Kind::kBool:
      return a.b == b.b;
    case Value::Kind::kString:
      return a.s == b.s;
    case Value::Kind::kArray: {
      if (a.arr->items.size() != b.arr->items.size()) return false;
      for (size_t k = 0; k < a.arr->items.size(); ++k) {
        if (!Equals(a.arr->items[k], b.arr->items[k])) return false;
      }
      return true;
    }
    case Value::Kind::kObject: {
      if (a.obj == b.obj) return true;
      if (a.obj->items.size() != b.obj->items.size()) return false;
      for (const auto& [k, v] : a.obj->items) {
        const Value* other = b.obj->Find(k);
        if (other == nullptr || !Equals(v, *other)) return false;
      }
      return true;
    }
    case Value::Kind::kFunction:
      return a.fn == b.fn;
    default:
      return false;
  }
}

Value Concat(const Value& a, const Value& b) {
  Value out = Value::String(a.s + b.s);
  out.taint = a.taint;
  const auto shift = static_cast<uint32_t>(a.s.size());
  for (const auto& [begin, end] : b.taint) {
    if (!out.taint.empty() && out.taint.back().second == begin + shift) {
      out.taint.back().second = end + shift;  // merge adjacent ranges
    } else {
      out.taint.emplace_back(begin + shift, end + shift);
    }
  }
  return out;
}

bool DeepTainted(const Value& v) {
  if (!v.taint.empty()) return true;
  if (v.is_array()) {
    for (const auto& e : v.arr->items) {
      if (DeepTainted(e)) return true;
    }
  }
  if (v.is_object()) {
    if (v.obj->tainted_keys && !v.obj->items.empty()) return true;
    for (const auto& [k, e] : v.obj->items) {
      if (DeepTainted(e)) return true;
    }
  }
  return false;
}

Value Derived(std::string s, std::initializer_list<const Value*> sources) {
  bool tainted = false;
  for (const Value* src : sources) tainted = tainted || DeepTainted(*src);
  return Value::String(std::move(s), tainted);
}

}  // namespace dsv3::jinja
