#include "graph/spec.h"

#include <variant>

namespace ap::graph {
namespace {

using Token = std::variant<std::string, int64_t>;

// "messages[-1].tool_calls" -> ["messages", -1, "tool_calls"]. nullopt if malformed.
std::optional<std::vector<Token>> parse_path(std::string_view p) {
  std::vector<Token> out;
  size_t i = 0;
  auto name = [&]() -> bool {
    size_t start = i;
    while (i < p.size() && p[i] != '.' && p[i] != '[') ++i;
    if (i == start) return false;
    out.emplace_back(std::string(p.substr(start, i - start)));
    return true;
  };
  if (!name()) return std::nullopt;
  while (i < p.size()) {
    if (p[i] == '.') {
      ++i;
      if (!name()) return std::nullopt;
    } else if (p[i] == '[') {
      size_t close = p.find(']', i);
      if (close == std::string_view::npos) return std::nullopt;
      std::string num(p.substr(i + 1, close - i - 1));
      char* end = nullptr;
      long long v = std::strtoll(num.c_str(), &end, 10);
      if (num.empty() || *end) return std::nullopt;
      out.emplace_back(static_cast<int64_t>(v));
      i = close + 1;
    } else {
      return std::nullopt;
    }
  }
  return out;
}

const Json* step_into(const Json* j, const Token& t) {
  if (!j) return nullptr;
  if (auto* key = std::get_if<std::string>(&t)) {
    if (!j->is_object()) return nullptr;
    auto it = j->find(*key);
    return it == j->end() ? nullptr : &*it;
  }
  int64_t i = std::get<int64_t>(t);
  if (!j->is_array()) return nullptr;
  int64_t n = static_cast<int64_t>(j->size());
  if (i < 0) i += n;
  if (i < 0 || i >= n) return nullptr;
  return &(*j)[static_cast<size_t>(i)];
}

std::string to_text(const Json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

bool is_empty(const Json& v) {
  return v.is_null() || ((v.is_string() || v.is_array() || v.is_object()) && v.empty());
}

constexpr const char* kOps[] = {"==", "!=", "<", "<=", ">", ">=", "in", "contains", "exists", "empty"};

}  // namespace

Json eval_path(const NodeContext& ctx, std::string_view path, const Json* item) {
  auto tokens = parse_path(path);
  if (!tokens) return Json();
  const auto& head = std::get<std::string>((*tokens)[0]);
  size_t next = 1;
  Json holder;
  const Json* cur = nullptr;
  if (head == "$item") {
    cur = item;
  } else if (head == "$config") {
    cur = &ctx.config();
  } else {
    const auto& v = ctx.channel(head);
    if (!v) return Json();
    if (v->is_list()) {
      // Index into a list channel without materialising it.
      if (tokens->size() > 1 && std::holds_alternative<int64_t>((*tokens)[1])) {
        cur = v->at(std::get<int64_t>((*tokens)[1]));
        next = 2;
      } else {
        holder = v->to_json();
        cur = &holder;
      }
    } else {
      cur = &v->value();
    }
  }
  for (size_t i = next; i < tokens->size() && cur; ++i) cur = step_into(cur, (*tokens)[i]);
  return cur ? *cur : Json();
}

Result<Json> eval_value(const NodeContext& ctx, const Json& e, const Json* item) {
  if (!e.is_object()) return e;
  if (e.contains("literal")) return e["literal"];
  if (e.contains("object")) {
    Json out = Json::object();
    for (const auto& [k, v] : e["object"].items()) {
      AP_ASSIGN_OR_RETURN(out[k], eval_value(ctx, v, item));
    }
    return out;
  }
  if (e.contains("from")) return eval_path(ctx, e["from"].get<std::string>(), item);
  if (e.contains("increment")) {
    Json cur = eval_path(ctx, e["increment"].get<std::string>(), item);
    Json by = e.value("by", Json(1));
    if (!by.is_number()) return Error::invalid_argument("'by' must be a number");
    if (cur.is_null()) cur = 0;
    if (!cur.is_number()) return Error::invalid_argument("cannot increment a non-number");
    if (cur.is_number_integer() && by.is_number_integer()) return Json(cur.get<int64_t>() + by.get<int64_t>());
    return Json(cur.get<double>() + by.get<double>());
  }
  if (e.contains("template")) {
    const std::string t = e["template"].get<std::string>();
    std::string out;
    size_t i = 0;
    while (i < t.size()) {
      size_t open = t.find("{{", i);
      if (open == std::string::npos) {
        out += t.substr(i);
        break;
      }
      size_t close = t.find("}}", open + 2);
      if (close == std::string::npos) {
        out += t.substr(i);
        break;
      }
      out += t.substr(i, open - i);
      std::string path = t.substr(open + 2, close - open - 2);
      while (!path.empty() && path.front() == ' ') path.erase(0, 1);
      while (!path.empty() && path.back() == ' ') path.pop_back();
      Json v = eval_path(ctx, path, item);
      if (!v.is_null()) out += to_text(v);
      i = close + 2;
    }
    return Json(out);
  }
  return e;  // an object without an operator is a literal object
}

Result<bool> eval_condition(const NodeContext& ctx, const Json& c) {
  if (c.contains("and")) {
    for (const auto& x : c["and"]) {
      AP_ASSIGN_OR_RETURN(bool b, eval_condition(ctx, x));
      if (!b) return false;
    }
    return true;
  }
  if (c.contains("or")) {
    for (const auto& x : c["or"]) {
      AP_ASSIGN_OR_RETURN(bool b, eval_condition(ctx, x));
      if (b) return true;
    }
    return false;
  }
  if (c.contains("not")) {
    AP_ASSIGN_OR_RETURN(bool b, eval_condition(ctx, c["not"]));
    return !b;
  }
  Json v = eval_path(ctx, c.value("path", ""));
  std::string op = c.value("op", "==");
  const Json want = c.value("value", Json());
  if (op == "exists") return !v.is_null();
  if (op == "empty") return is_empty(v);
  if (op == "==") return v == want;
  if (op == "!=") return v != want;
  if (op == "in") return want.is_array() && std::find(want.begin(), want.end(), v) != want.end();
  if (op == "contains") {
    if (v.is_string() && want.is_string()) return v.get<std::string>().find(want.get<std::string>()) != std::string::npos;
    if (v.is_array()) return std::find(v.begin(), v.end(), want) != v.end();
    if (v.is_object() && want.is_string()) return v.contains(want.get<std::string>());
    return false;
  }
  // Ordering compares numbers with numbers and strings with strings; anything else is false.
  bool comparable = (v.is_number() && want.is_number()) || (v.is_string() && want.is_string());
  if (!comparable) return false;
  if (op == "<") return v < want;
  if (op == "<=") return v <= want;
  if (op == ">") return v > want;
  if (op == ">=") return v >= want;
  return Error::invalid_argument("unknown operator '" + op + "'");
}

void NodeSpecContext::check_path(const Json& path, bool item_ok) const {
  if (!path.is_string()) return problem("a path must be a string");
  auto t = parse_path(path.get<std::string>());
  if (!t) return problem("malformed path '" + path.get<std::string>() + "'");
  const auto& head = std::get<std::string>((*t)[0]);
  if (head == "$item" && item_ok) return;
  if (head == "$config") return;  // the run's configuration: known only at run time
  if (!channels.count(head)) problem("path '" + path.get<std::string>() + "' names unknown channel '" + head + "'");
}

void NodeSpecContext::check_value(const Json& e, bool item_ok) const {
  if (!e.is_object()) return;
  if (e.contains("object")) {
    if (!e["object"].is_object()) return problem("'object' takes an object of value expressions");
    for (const auto& [k, v] : e["object"].items()) check_value(v, item_ok);
    return;
  }
  if (e.contains("from")) check_path(e["from"], item_ok);
  if (e.contains("increment")) check_path(e["increment"], item_ok);
  if (e.contains("template")) {
    if (!e["template"].is_string()) return problem("a template must be a string");
    const std::string t = e["template"];
    for (size_t i = t.find("{{"); i != std::string::npos; i = t.find("{{", i + 2)) {
      size_t close = t.find("}}", i + 2);
      if (close == std::string::npos) return problem("unclosed {{ in template");
      std::string p = t.substr(i + 2, close - i - 2);
      while (!p.empty() && p.front() == ' ') p.erase(0, 1);
      while (!p.empty() && p.back() == ' ') p.pop_back();
      check_path(Json(p), item_ok);
    }
  }
}

void NodeSpecContext::check_condition(const Json& c) const {
  if (!c.is_object()) return problem("a condition must be an object");
  for (const char* k : {"and", "or"})
    if (c.contains(k)) {
      if (!c[k].is_array()) return problem(std::string("'") + k + "' takes a list of conditions");
      for (const auto& x : c[k]) check_condition(x);
      return;
    }
  if (c.contains("not")) return check_condition(c["not"]);
  if (!c.contains("path")) return problem("a condition needs 'path' (or and/or/not)");
  check_path(c["path"]);
  std::string op = c.value("op", "==");
  if (std::find(std::begin(kOps), std::end(kOps), op) == std::end(kOps))
    problem("unknown operator '" + op + "'");
  if (op == "in" && !c.value("value", Json()).is_array()) problem("'in' takes a list value");
}

NodeKinds& NodeKinds::add(std::string kind, NodeFactory factory) {
  kinds_[std::move(kind)] = std::move(factory);
  return *this;
}

const NodeFactory* NodeKinds::find(const std::string& kind) const {
  auto it = kinds_.find(kind);
  return it == kinds_.end() ? nullptr : &it->second;
}

std::vector<std::string> NodeKinds::names() const {
  std::vector<std::string> out;
  for (const auto& [k, _] : kinds_) out.push_back(k);
  return out;
}

}  // namespace ap::graph
