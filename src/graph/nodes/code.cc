#include "graph/nodes/code.h"

#include "graph/nodes/run_services.h"

namespace ap::graph::nodes {

Result<std::string> code_language(const std::string& name) {
  if (name == "python" || name == "python3" || name == "py") return std::string("python");
  if (name == "shell" || name == "sh" || name == "bash") return std::string("shell");
  if (name == "node" || name == "javascript" || name == "js" || name == "nodejs") return std::string("node");
  return Error::invalid_argument("unknown language '" + name + "' (known: python, shell, node)");
}

sandbox::Spec code_spec(const std::string& language, const std::string& source, std::string stdin_data,
                        std::chrono::milliseconds timeout) {
  sandbox::Spec s;
  if (language == "python") {
    s.argv = {"python3", "-I", "main.py"};
    s.files = {{"main.py", source, 0644}};
  } else if (language == "node") {
    s.argv = {"node", "main.js"};
    s.files = {{"main.js", source, 0644}};
    s.limits.memory_bytes = 512ll << 20;  // V8 reserves more than CPython
  } else {
    s.argv = {"/bin/sh", "main.sh"};
    s.files = {{"main.sh", source, 0644}};
  }
  s.stdin_data = std::move(stdin_data);
  s.limits.wall = timeout;
  s.limits.cpu = timeout;
  return s;
}

std::string tail(const std::string& text, size_t max) {
  return text.size() <= max ? text : "..." + text.substr(text.size() - max);
}

BuiltNode code_kind(const NodeSpecContext& ctx) {
  BuiltNode b;
  std::string language = "python";
  if (ctx.spec.contains("language")) {
    auto l = ctx.spec["language"].is_string() ? code_language(ctx.spec["language"].get<std::string>())
                                              : Result<std::string>(Error::invalid_argument("'language' must be a string"));
    if (!l) ctx.problem(l.error().message);
    else language = *l;
  }
  const Json source = ctx.spec.value("source", Json());
  if (!source.is_string() || source.get<std::string>().empty()) ctx.problem("'source' (the script) is required");
  const Json input = ctx.spec.value("input", Json());
  if (!input.is_null()) ctx.check_value(input);
  const Json t = ctx.spec.value("timeout_s", Json(30));
  if (!t.is_number() || t.get<double>() <= 0 || t.get<double>() > 300) ctx.problem("'timeout_s' must be in (0, 300]");
  const auto timeout = std::chrono::milliseconds(t.is_number() ? static_cast<int64_t>(t.get<double>() * 1000) : 30000);
  const Json net = ctx.spec.value("network", Json(false));
  if (!net.is_boolean()) ctx.problem("'network' must be true or false");
  const bool network = net.is_boolean() && net.get<bool>();
  const std::set<std::string> channels = ctx.channels;
  const std::string script = source.is_string() ? source.get<std::string>() : "";
  b.fn = [=](NodeContext& c) -> Result<NodeOutput> {
    auto* svc = dynamic_cast<RunServices*>(c.scope());
    if (!svc) return Error::failed_precondition("node '" + c.node() + "': code nodes run on the platform's workers (no sandbox here)");
    Json in;
    if (input.is_null()) {
      in = c.state();
    } else {
      AP_ASSIGN_OR_RETURN(in, eval_value(c, input));
    }
    auto spec = code_spec(language, script, in.dump(), timeout);
    spec.network = network;
    AP_ASSIGN_OR_RETURN(auto r, svc->code(std::move(spec)));
    if (!r.ok())
      return Error::failed_precondition("node '" + c.node() + "': the " + language + " code " + r.summary() +
                                        (r.stderr_data.empty() ? "" : "; stderr: " + tail(r.stderr_data)));
    NodeOutput out;
    const auto first = r.stdout_data.find_first_not_of(" \t\r\n");
    if (first == std::string::npos) return out;
    Json update = Json::parse(r.stdout_data, nullptr, false);
    if (update.is_discarded() || !update.is_object())
      return Error::invalid_argument("node '" + c.node() + "': the code must print one JSON object of channel updates; it printed: " +
                                     tail(r.stdout_data, 300));
    for (auto& [k, v] : update.items()) {
      if (!channels.count(k)) return Error::invalid_argument("node '" + c.node() + "': the code's output names unknown channel '" + k + "'");
      out.write(k, std::move(v));
    }
    return out;
  };
  return b;
}

}  // namespace ap::graph::nodes
