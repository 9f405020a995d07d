// Runtime values of dsv3's Jinja interpreter, with Python/Jinja2 semantics (what Hugging Face
// transformers renders chat templates with): None prints as "None", True as "True", strings
// index by code point, lists and dicts are shared by reference but never mutated (transformers
// uses Jinja2's ImmutableSandboxedEnvironment), namespace() objects are the one mutable kind.
//
// Strings carry "taint": byte ranges that came from request data (message contents, tool
// definitions). Concatenation keeps the ranges exact; any other operation on tainted text
// taints its whole result. The chat template reports these ranges so the tokenizer can treat
// user-typed control tokens as plain text.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nlohmann/json_fwd.hpp"

namespace dsv3::jinja {

// Raised inside the interpreter and turned into a Status at the API boundary.
class JinjaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

using Range = std::pair<uint32_t, uint32_t>;  // [begin, end) in bytes

struct Value;
struct ArrayData;
struct ObjectData;
struct Function;

struct Value {
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kArray, kObject, kFunction };
  Kind kind = Kind::kUndefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;             // string value; for kUndefined the name it was looked up by
  std::vector<Range> taint;  // tainted byte ranges of s, sorted, non-overlapping
  std::shared_ptr<const ArrayData> arr;
  std::shared_ptr<ObjectData> obj;
  std::shared_ptr<const Function> fn;

  static Value Undefined(std::string hint = {});
  static Value None();
  static Value Bool(bool v);
  static Value Int(int64_t v);
  static Value Float(double v);
  static Value String(std::string v, bool tainted = false);
  static Value Array(std::vector<Value> items);
  static Value Object(std::vector<std::pair<std::string, Value>> items, bool namespace_object = false);
  static Value Func(std::string name, std::function<Value(std::vector<Value>&, std::vector<std::pair<std::string, Value>>&)> fn);
  // Converts JSON (e.g. the request's messages); strings and keys are tainted when `tainted`.
  // ordered_json keeps the request's key order, which tojson output must preserve.
  static Value FromJson(const nlohmann::ordered_json& j, bool tainted);

  bool is_undefined() const { return kind == Kind::kUndefined; }
  bool is_none() const { return kind == Kind::kNone; }
  bool is_string() const { return kind == Kind::kString; }
  bool is_number() const { return kind == Kind::kInt || kind == Kind::kFloat; }
  bool is_array() const { return kind == Kind::kArray; }
  bool is_object() const { return kind == Kind::kObject; }
  bool is_tainted() const { return !taint.empty(); }

  bool Truthy() const;
  const char* TypeName() const;
};

struct ArrayData {
  std::vector<Value> items;
};

struct ObjectData {
  std::vector<std::pair<std::string, Value>> items;  // insertion order, like Python dicts
  bool is_namespace = false;
  bool tainted_keys = false;
  const Value* Find(std::string_view key) const;
  void Set(const std::string& key, Value v);
};

struct Function {
  std::string name;
  std::function<Value(std::vector<Value>&, std::vector<std::pair<std::string, Value>>&)> fn;
};

// Python str(): what {{ value }} prints.
Value ToStringValue(const Value& v);
// Python repr() of a value inside a container (strings quoted).
std::string Repr(const Value& v);
// Jinja2/transformers tojson: json.dumps(ensure_ascii=False), ", " and ": " separators.
std::string ToJson(const Value& v, int indent, bool sort_keys, int depth = 0);
// Python ==.
bool Equals(const Value& a, const Value& b);
// String concatenation keeping taint ranges exact.
Value Concat(const Value& a, const Value& b);
// Taint for a string derived from `sources`: fully tainted when any source is tainted.
Value Derived(std::string s, std::initializer_list<const Value*> sources);
// True when the value or anything inside it is tainted.
bool DeepTainted(const Value& v);
// Python repr of a float (shortest round-trip form, always with a '.' or exponent).
std::string FormatFloat(double d);

}  // namespace dsv3::jinja
