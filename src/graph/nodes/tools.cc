#include "graph/nodes/tools.h"

#include "graph/nodes/code.h"

#include <date/tz.h>

#include <cctype>
#include <cmath>
#include <map>
#include <set>

namespace ap::graph::nodes {
namespace {

constexpr size_t kMaxToolOutput = 32 * 1024;  // characters of a tool's answer given to the model

// ---- calculator: recursive descent over a string, no allocation per token -----------------
class Calc {
 public:
  explicit Calc(std::string_view s) : s_(s) {}
  Result<double> run() {
    AP_ASSIGN_OR_RETURN(double v, expr());
    skip();
    if (p_ != s_.size()) return fail("unexpected '" + std::string(1, s_[p_]) + "'");
    if (!std::isfinite(v)) return Error::invalid_argument("the result is not a finite number");
    return v;
  }

 private:
  Error fail(const std::string& what) const {
    return Error::invalid_argument(what + " at position " + std::to_string(p_ + 1));
  }
  void skip() {
    while (p_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[p_]))) ++p_;
  }
  bool eat(char c) {
    skip();
    if (p_ < s_.size() && s_[p_] == c) {
      ++p_;
      return true;
    }
    return false;
  }
  Result<double> expr() {
    AP_ASSIGN_OR_RETURN(double v, term());
    for (;;) {
      if (eat('+')) {
        AP_ASSIGN_OR_RETURN(double r, term());
        v += r;
      } else if (eat('-')) {
        AP_ASSIGN_OR_RETURN(double r, term());
        v -= r;
      } else {
        return v;
      }
    }
  }
  Result<double> term() {
    AP_ASSIGN_OR_RETURN(double v, unary());
    for (;;) {
      skip();
      if (p_ + 1 < s_.size() && s_[p_] == '*' && s_[p_ + 1] == '*') return v;  // power: handled below
      if (eat('*')) {
        AP_ASSIGN_OR_RETURN(double r, unary());
        v *= r;
      } else if (eat('/')) {
        AP_ASSIGN_OR_RETURN(double r, unary());
        if (r == 0) return fail("division by zero");
        v /= r;
      } else if (eat('%')) {
        AP_ASSIGN_OR_RETURN(double r, unary());
        if (r == 0) return fail("modulo by zero");
        v = std::fmod(v, r);
      } else {
        return v;
      }
    }
  }
  Result<double> unary() {
    if (++depth_ > 200) return fail("expression nested too deeply");
    struct Leave {
      int& d;
      ~Leave() { --d; }
    } leave{depth_};
    if (eat('-')) {
      AP_ASSIGN_OR_RETURN(double v, unary());
      return -v;
    }
    if (eat('+')) return unary();
    return power();
  }
  Result<double> power() {
    AP_ASSIGN_OR_RETURN(double base, atom());
    skip();
    bool pow = false;
    if (p_ < s_.size() && s_[p_] == '^') {
      ++p_;
      pow = true;
    } else if (p_ + 1 < s_.size() && s_[p_] == '*' && s_[p_ + 1] == '*') {
      p_ += 2;
      pow = true;
    }
    if (!pow) return base;
    AP_ASSIGN_OR_RETURN(double ex, unary());  // right-associative; -x binds into the exponent
    return std::pow(base, ex);
  }
  Result<double> atom() {
    skip();
    if (p_ >= s_.size()) return fail("expected a number");
    if (eat('(')) {
      AP_ASSIGN_OR_RETURN(double v, expr());
      if (!eat(')')) return fail("expected ')'");
      return v;
    }
    const char c = s_[p_];
    if (std::isdigit(static_cast<unsigned char>(c)) || c == '.') {
      size_t used = 0;
      double v = 0;
      try {
        v = std::stod(std::string(s_.substr(p_, 64)), &used);
      } catch (...) {
        return fail("bad number");
      }
      p_ += used;
      return v;
    }
    if (std::isalpha(static_cast<unsigned char>(c))) {
      size_t start = p_;
      while (p_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[p_])) || s_[p_] == '_')) ++p_;
      const std::string name(s_.substr(start, p_ - start));
      if (name == "pi") return M_PI;
      if (name == "e") return M_E;
      if (!eat('(')) return fail("unknown name '" + name + "'");
      std::vector<double> args;
      if (!eat(')')) {
        for (;;) {
          AP_ASSIGN_OR_RETURN(double a, expr());
          args.push_back(a);
          if (eat(')')) break;
          if (!eat(',')) return fail("expected ',' or ')'");
        }
      }
      return call(name, args);
    }
    return fail("unexpected '" + std::string(1, c) + "'");
  }
  Result<double> call(const std::string& f, const std::vector<double>& a) {
    static const std::map<std::string, double (*)(double)> one = {
        {"sqrt", [](double x) { return std::sqrt(x); }},   {"abs", [](double x) { return std::fabs(x); }},
        {"round", [](double x) { return std::round(x); }}, {"floor", [](double x) { return std::floor(x); }},
        {"ceil", [](double x) { return std::ceil(x); }},   {"ln", [](double x) { return std::log(x); }},
        {"log10", [](double x) { return std::log10(x); }}, {"exp", [](double x) { return std::exp(x); }}};
    if (auto it = one.find(f); it != one.end()) {
      if (a.size() != 1) return fail(f + "() takes one argument");
      return it->second(a[0]);
    }
    if (f == "min" || f == "max") {
      if (a.empty()) return fail(f + "() needs arguments");
      double v = a[0];
      for (double x : a) v = f == "min" ? std::min(v, x) : std::max(v, x);
      return v;
    }
    return fail("unknown function '" + f + "'");
  }

  std::string_view s_;
  size_t p_ = 0;
  int depth_ = 0;
};

std::string number_text(double v) {
  if (std::fabs(v) < 1e15 && v == std::floor(v)) return std::to_string(static_cast<int64_t>(v));
  Json j = v;  // shortest round-trip form
  return j.dump();
}

ToolOutcome calculator(const Json& args) {
  if (!args.contains("expression") || !args["expression"].is_string())
    return {"Error: calculator needs {\"expression\": \"...\"}", true};
  auto v = calculate(args["expression"].get<std::string>());
  if (!v) return {"Error: " + v.error().message, true};
  return {number_text(*v), false};
}

ToolOutcome current_time(const Json& args) {
  const std::string zone = args.contains("timezone") && args["timezone"].is_string() ? args["timezone"].get<std::string>() : "UTC";
  const date::time_zone* tz = nullptr;
  try {
    tz = date::locate_zone(zone);
  } catch (const std::exception&) {
    return {"Error: unknown time zone '" + zone + "' (use an IANA name such as Europe/Paris)", true};
  }
  auto now = date::make_zoned(tz, std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now()));
  return {date::format("%FT%T%Ez", now) + " (" + zone + ")", false};
}

const std::map<std::string, llm::ToolSpec>& builtins() {
  static const std::map<std::string, llm::ToolSpec> b = {
      {"calculator",
       {"calculator", "Evaluates an arithmetic expression: + - * / % ^, parentheses, sqrt, abs, round, min, max, ln, exp, pi.",
        Json::parse(R"({"type": "object", "properties": {"expression": {"type": "string",
          "description": "for example (2 + 3) * 4 ^ 2"}}, "required": ["expression"]})")}},
      {"current_time",
       {"current_time", "The current date and time, in a time zone.",
        Json::parse(R"({"type": "object", "properties": {"timezone": {"type": "string",
          "description": "an IANA time zone such as Europe/Paris; default UTC"}}})")}},
  };
  return b;
}

llm::ToolSpec code_tool_spec() {
  return {"code",
          "Runs a script in a sandbox (no network; files live only for this call) and returns what it prints. "
          "Print the result you need.",
          Json::parse(R"({"type": "object", "properties": {
            "language": {"type": "string", "enum": ["python", "shell", "node"], "description": "default python"},
            "code": {"type": "string", "description": "the script"}}, "required": ["code"]})")};
}

std::string url_encode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string arg_text(const Json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

Result<ToolDef> parse_http(const Json& t, const std::string& name) {
  ToolDef d;
  d.spec.name = name;
  d.spec.description = t.value("description", "");
  d.spec.parameters = t.value("parameters", Json{{"type", "object"}, {"properties", Json::object()}});
  if (!d.spec.parameters.is_object()) return Error::invalid_argument("'parameters' must be a JSON Schema object");
  const Json& h = t["http"];
  if (!h.is_object()) return Error::invalid_argument("'http' must be an object");
  d.http.method = h.value("method", "GET");
  static const std::set<std::string> methods = {"GET", "POST", "PUT", "PATCH", "DELETE"};
  if (!methods.count(d.http.method)) return Error::invalid_argument("http.method must be GET, POST, PUT, PATCH or DELETE");
  d.http.url = h.value("url", "");
  if (!d.http.url.starts_with("https://") && !d.http.url.starts_with("http://"))
    return Error::invalid_argument("http.url must be an http(s) URL");
  {
    // Arguments may fill the path and query only: a model must never choose where a request
    // (and the credential it carries) goes.
    const size_t host_start = d.http.url.find("://") + 3;
    const size_t path_start = d.http.url.find_first_of("/?#", host_start);
    const std::string authority = d.http.url.substr(host_start, path_start == std::string::npos ? std::string::npos : path_start - host_start);
    if (authority.find('{') != std::string::npos || authority.find('}') != std::string::npos || authority.empty())
      return Error::invalid_argument("http.url: {placeholders} may appear in the path and query only, not in the host or port");
  }
  if (h.contains("headers")) {
    if (!h["headers"].is_object()) return Error::invalid_argument("http.headers must be an object of strings");
    for (const auto& [k, v] : h["headers"].items()) {
      if (!v.is_string()) return Error::invalid_argument("http.headers must be an object of strings");
      d.http.headers.emplace_back(k, v.get<std::string>());
    }
  }
  if (h.contains("credential")) {
    const Json& c = h["credential"];
    if (c.is_string()) {
      d.http.credential = c;
    } else if (c.is_object() && c.contains("name") && c["name"].is_string()) {
      d.http.credential = c["name"];
      d.http.credential_header = c.value("header", "Authorization");
      d.http.credential_prefix = c.value("prefix", d.http.credential_header == "Authorization" ? "Bearer " : "");
    } else {
      return Error::invalid_argument("http.credential must be a credential name or {name, header, prefix}");
    }
  }
  const double timeout = h.value("timeout_s", 30.0);
  if (!(timeout > 0 && timeout <= 300)) return Error::invalid_argument("http.timeout_s must be in (0, 300]");
  d.http.timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout * 1000));
  return d;
}

ToolOutcome run_http(const ToolDef& t, const Json& args, RunServices* services) {
  if (!services) return {"Error: http tools need the platform (run the graph on a worker)", true};
  HttpCall call = t.http;
  Json rest = args.is_object() ? args : Json::object();
  // {name} placeholders in the URL take their arguments.
  std::string url;
  for (size_t i = 0; i < call.url.size();) {
    size_t open = call.url.find('{', i);
    if (open == std::string::npos) {
      url += call.url.substr(i);
      break;
    }
    size_t close = call.url.find('}', open);
    if (close == std::string::npos) {
      url += call.url.substr(i);
      break;
    }
    url += call.url.substr(i, open - i);
    const std::string key = call.url.substr(open + 1, close - open - 1);
    if (!rest.contains(key)) return {"Error: missing argument '" + key + "'", true};
    const std::string value = arg_text(rest[key]);
    // Percent-encoding keeps an argument inside its path segment, except the dot segments that
    // servers resolve (a model must not walk the tool's path upwards).
    if (value == "." || value == ".." || value.empty())
      return {"Error: argument '" + key + "' must not be empty, '.' or '..'", true};
    url += url_encode(value);
    rest.erase(key);
    i = close + 1;
  }
  if (call.method == "GET" || call.method == "DELETE") {
    char sep = url.find('?') == std::string::npos ? '?' : '&';
    for (const auto& [k, v] : rest.items()) {
      url += sep + url_encode(k) + "=" + url_encode(arg_text(v));
      sep = '&';
    }
  } else {
    call.body = rest.dump();
    call.headers.emplace_back("content-type", "application/json");
  }
  call.url = std::move(url);
  auto reply = services->http(std::move(call));
  if (!reply) return {"Error: " + reply.error().message, true};
  std::string body = std::move(reply->body);
  if (body.size() > kMaxToolOutput) body = body.substr(0, kMaxToolOutput) + "\n[truncated]";
  if (reply->status >= 400) return {"Error: HTTP " + std::to_string(reply->status) + ": " + body, true};
  return {std::move(body), false};
}

}  // namespace

Result<double> calculate(std::string_view expression) {
  if (expression.size() > 4096) return Error::invalid_argument("expression longer than 4096 characters");
  return Calc(expression).run();
}

Result<std::vector<ToolDef>> parse_tools(const Json& list) {
  std::vector<ToolDef> out;
  if (list.is_null()) return out;
  if (!list.is_array()) return Error::invalid_argument("tools must be a list");
  std::vector<std::string> problems;
  std::set<std::string> names;
  for (size_t i = 0; i < list.size(); ++i) {
    const Json& t = list[i];
    const std::string where = "tools[" + std::to_string(i) + "]";
    std::string name = t.is_string() ? t.get<std::string>() : t.is_object() ? t.value("name", "") : "";
    if (name.empty()) {
      problems.push_back(where + ": a tool is a built-in's name or an object with a name");
      continue;
    }
    if (!names.insert(name).second) {
      problems.push_back(where + ": tool '" + name + "' is listed twice");
      continue;
    }
    if (t.is_object() && t.contains("http")) {
      auto d = parse_http(t, name);
      if (!d) problems.push_back(where + " (" + name + "): " + d.error().message);
      else out.push_back(std::move(*d));
      continue;
    }
    if (name == "code") {
      ToolDef d;
      d.spec = code_tool_spec();
      if (t.is_object() && t.contains("description") && t["description"].is_string()) d.spec.description = t["description"];
      if (t.is_object() && t.contains("network")) {
        if (!t["network"].is_boolean()) {
          problems.push_back(where + " (code): 'network' must be true or false");
          continue;
        }
        d.network = t["network"].get<bool>();
      }
      d.builtin = name;
      out.push_back(std::move(d));
      continue;
    }
    auto b = builtins().find(name);
    if (b == builtins().end()) {
      problems.push_back(where + ": unknown built-in tool '" + name + "' (built-ins: calculator, current_time; "
                         "other tools need an \"http\" definition)");
      continue;
    }
    ToolDef d;
    d.spec = b->second;
    if (t.is_object() && t.contains("description") && t["description"].is_string()) d.spec.description = t["description"];
    d.builtin = name;
    out.push_back(std::move(d));
  }
  if (!problems.empty()) {
    std::string m;
    for (const auto& p : problems) m += (m.empty() ? "" : "; ") + p;
    return Error::invalid_argument(m);
  }
  return out;
}

ToolOutcome run_code(const ToolDef& tool, const Json& args, RunServices* services) {
  if (!services) return {"Error: the code tool needs the platform (run the graph on a worker)", true};
  if (!args.is_object() || !args.contains("code") || !args["code"].is_string() || args["code"].get<std::string>().empty())
    return {"Error: 'code' (the script to run) is required", true};
  auto language = code_language(args.value("language", "python"));
  if (!language) return {"Error: " + language.error().message, true};
  auto spec = code_spec(*language, args["code"].get<std::string>(), "", std::chrono::seconds(30));
  spec.network = tool.network;
  auto r = services->code(std::move(spec));
  if (!r) return {"Error: " + r.error().message, true};
  std::string content = tail(r->stdout_data, 16000);
  if (!r->stderr_data.empty()) content += (content.empty() ? "" : "\n") + std::string("[stderr]\n") + tail(r->stderr_data, 4000);
  if (!r->ok()) return {content + (content.empty() ? "" : "\n") + "[" + r->summary() + "]", true};
  return {content.empty() ? "(no output)" : content, false};
}

ToolOutcome run_tool(const ToolDef& tool, const Json& args, RunServices* services) {
  if (tool.builtin == "code") return run_code(tool, args, services);
  if (tool.builtin == "calculator") return calculator(args);
  if (tool.builtin == "current_time") return current_time(args);
  return run_http(tool, args, services);
}

}  // namespace ap::graph::nodes
