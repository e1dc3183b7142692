// compile_spec and the built-in node kinds (router, set, interrupt, send).
#include "graph/spec.h"

#include <algorithm>

namespace ap::graph {
namespace {

std::vector<std::string> names_of(const Json& v) {
  std::vector<std::string> out;
  if (v.is_string()) out.push_back(v.get<std::string>());
  if (v.is_array())
    for (const auto& x : v)
      if (x.is_string()) out.push_back(x.get<std::string>());
  return out;
}

void check_targets(const NodeSpecContext& ctx, const Json& v, std::vector<std::string>& all) {
  if (!v.is_string() && !v.is_array()) return ctx.problem("a target must be a node name or a list of them");
  for (const auto& t : names_of(v)) {
    if (!ctx.nodes.count(t)) ctx.problem("goes to unknown node '" + t + "'");
    all.push_back(t);
  }
}

BuiltNode router_kind(const NodeSpecContext& ctx) {
  BuiltNode b;
  const Json cases = ctx.spec.value("cases", Json::array());
  if (!cases.is_array()) ctx.problem("'cases' must be a list");
  for (const auto& c : cases) {
    if (!c.is_object() || !c.contains("when") || !c.contains("goto")) {
      ctx.problem("each case needs 'when' and 'goto'");
      continue;
    }
    ctx.check_condition(c["when"]);
    check_targets(ctx, c["goto"], b.targets);
  }
  Json fallback = ctx.spec.value("default", Json(kEnd));
  check_targets(ctx, fallback, b.targets);
  b.fn = [](NodeContext&) -> Result<NodeOutput> { return NodeOutput(); };
  b.router = [cases, fallback](NodeContext& c) -> Result<Route> {
    for (const auto& k : cases) {
      AP_ASSIGN_OR_RETURN(bool hit, eval_condition(c, k["when"]));
      if (hit) return Route{names_of(k["goto"]), {}};
    }
    return Route{names_of(fallback), {}};
  };
  return b;
}

BuiltNode set_kind(const NodeSpecContext& ctx) {
  const Json values = ctx.spec.value("values", Json::object());
  if (!values.is_object() || values.empty()) ctx.problem("'values' must be a non-empty object");
  for (auto it = values.begin(); values.is_object() && it != values.end(); ++it) {
    if (!ctx.channels.count(it.key())) ctx.problem("writes unknown channel '" + it.key() + "'");
    ctx.check_value(it.value());
  }
  BuiltNode b;
  b.fn = [values](NodeContext& c) -> Result<NodeOutput> {
    NodeOutput out;
    for (auto it = values.begin(); it != values.end(); ++it) {
      AP_ASSIGN_OR_RETURN(Json v, eval_value(c, it.value()));
      out.write(it.key(), std::move(v));
    }
    return out;
  };
  return b;
}

BuiltNode interrupt_kind(const NodeSpecContext& ctx) {
  Json payload = ctx.spec.value("payload", Json());
  ctx.check_value(payload);
  std::string to = ctx.spec.value("resume_to", "");
  if (!to.empty() && !ctx.channels.count(to)) ctx.problem("'resume_to' names unknown channel '" + to + "'");
  BuiltNode b;
  b.fn = [payload, to](NodeContext& c) -> Result<NodeOutput> {
    AP_ASSIGN_OR_RETURN(Json ask, eval_value(c, payload));
    AP_ASSIGN_OR_RETURN(Json answer, c.interrupt(std::move(ask)));
    NodeOutput out;
    if (!to.empty()) out.write(to, std::move(answer));
    return out;
  };
  return b;
}

BuiltNode send_kind(const NodeSpecContext& ctx) {
  Json items = ctx.spec.value("items", Json());
  ctx.check_path(items);
  std::string node = ctx.spec.value("node", "");
  if (!ctx.nodes.count(node) || node == kEnd) ctx.problem("sends to unknown node '" + node + "'");
  Json arg = ctx.spec.value("arg", Json{{"from", "$item"}});
  ctx.check_value(arg, /*item_ok=*/true);
  if (arg.is_object())
    for (auto it = arg.begin(); it != arg.end(); ++it) ctx.check_value(it.value(), true);
  BuiltNode b;
  b.targets = {node};
  b.fn = [](NodeContext&) -> Result<NodeOutput> { return NodeOutput(); };
  b.router = [items, node, arg](NodeContext& c) -> Result<Route> {
    Route r;
    Json list = eval_path(c, items.is_string() ? items.get<std::string>() : "");
    if (!list.is_array()) return r;
    for (const auto& item : list) {
      // An object of expressions builds the Send's input field by field.
      Json a;
      if (arg.is_object() && !arg.contains("from") && !arg.contains("literal") &&
          !arg.contains("template") && !arg.contains("increment")) {
        a = Json::object();
        for (auto it = arg.begin(); it != arg.end(); ++it) {
          AP_ASSIGN_OR_RETURN(a[it.key()], eval_value(c, it.value(), &item));
        }
      } else {
        AP_ASSIGN_OR_RETURN(a, eval_value(c, arg, &item));
      }
      r.sends.push_back({node, std::move(a)});
    }
    return r;
  };
  return b;
}

// {"spec": {...}, "input": {child_channel: expr}, "output": {parent_channel: child_channel}}.
// Without "input", the child gets the parent's channels of the same names; without "output",
// the parent gets the child's channels of the same names.
BuiltNode subgraph_kind(const NodeSpecContext& ctx) {
  BuiltNode b;
  auto child = compile_spec(ctx.spec.value("spec", Json()), ctx.kinds);
  if (!child) {
    ctx.problem("embedded spec: " + child.error().message);
    return b;
  }
  std::shared_ptr<const CompiledGraph> g = *child;
  auto child_channels = g->state_channel_names();
  Json input = ctx.spec.value("input", Json());
  Json output = ctx.spec.value("output", Json());
  if (!input.is_null()) {
    if (!input.is_object()) ctx.problem("'input' must be an object");
    for (auto it = input.begin(); input.is_object() && it != input.end(); ++it) {
      if (std::find(child_channels.begin(), child_channels.end(), it.key()) == child_channels.end())
        ctx.problem("'input' names unknown subgraph channel '" + it.key() + "'");
      ctx.check_value(it.value());
    }
  }
  if (!output.is_null()) {
    if (!output.is_object()) ctx.problem("'output' must be an object");
    for (auto it = output.begin(); output.is_object() && it != output.end(); ++it) {
      if (!ctx.channels.count(it.key())) ctx.problem("'output' writes unknown channel '" + it.key() + "'");
      if (!it.value().is_string() || std::find(child_channels.begin(), child_channels.end(),
                                               it.value().get<std::string>()) == child_channels.end())
        ctx.problem("'output' reads unknown subgraph channel for '" + it.key() + "'");
    }
  }
  b.subgraph = g;
  b.fn = [g, input, output, child_channels](NodeContext& c) -> Result<NodeOutput> {
    Json in = Json::object();
    if (input.is_object()) {
      for (auto it = input.begin(); it != input.end(); ++it) {
        AP_ASSIGN_OR_RETURN(in[it.key()], eval_value(c, it.value()));
      }
    } else {
      for (const auto& name : child_channels)
        if (const auto& v = c.channel(name)) in[name] = v->to_json();
    }
    NodeOutput o;
    AP_ASSIGN_OR_RETURN(Json out, c.run_subgraph(*g, std::move(in), &o));
    if (!o.writes.empty() || !o.goto_nodes.empty() || !o.sends.empty()) return o;  // PARENT
    if (output.is_object()) {
      for (auto it = output.begin(); it != output.end(); ++it)
        if (out.contains(it.value().get<std::string>())) o.write(it.key(), out[it.value().get<std::string>()]);
    } else {
      for (auto it = out.begin(); it != out.end(); ++it)
        if (c.has_channel(it.key())) o.write(it.key(), it.value());
    }
    return o;
  };
  return b;
}

RetryPolicy parse_retry(const Json& r, const std::string& node, std::vector<std::string>& problems) {
  RetryPolicy p;
  if (r.is_null()) return p;
  if (!r.is_object()) {
    problems.push_back("node '" + node + "': 'retry' must be an object");
    return p;
  }
  p.max_attempts = r.value("max_attempts", 1);
  p.initial_interval_s = r.value("initial_interval_s", 0.5);
  p.backoff_factor = r.value("backoff_factor", 2.0);
  p.max_interval_s = r.value("max_interval_s", 128.0);
  if (p.max_attempts < 1 || p.max_attempts > 100)
    problems.push_back("node '" + node + "': retry.max_attempts must be 1 to 100");
  return p;
}

}  // namespace

NodeKinds NodeKinds::builtin() {
  NodeKinds k;
  k.add("router", router_kind).add("set", set_kind).add("interrupt", interrupt_kind).add("send", send_kind);
  k.add("subgraph", subgraph_kind);
  return k;
}

Result<std::shared_ptr<const CompiledGraph>> compile_spec(const Json& spec, const NodeKinds& kinds) {
  if (!spec.is_object()) return Error::invalid_argument("a graph spec must be a JSON object");
  std::vector<std::string> problems;
  StateGraph g;
  std::set<std::string> channels, nodes = {kEnd};
  const Json chans = spec.value("channels", Json::object());
  if (!chans.is_object()) problems.push_back("'channels' must be an object");
  for (auto it = chans.begin(); chans.is_object() && it != chans.end(); ++it) {
    std::string reducer = it.value().is_string() ? it.value().get<std::string>()
                          : it.value().is_object() ? it.value().value("reducer", "last_value")
                                                   : "";
    auto r = parse_reducer(reducer);
    if (!r) {
      problems.push_back("channel '" + it.key() + "': " + r.error().message);
      continue;
    }
    g.channel(it.key(), *r);
    channels.insert(it.key());
  }
  const Json node_specs = spec.value("nodes", Json::object());
  if (!node_specs.is_object() || node_specs.empty()) problems.push_back("'nodes' must be a non-empty object");
  for (auto it = node_specs.begin(); node_specs.is_object() && it != node_specs.end(); ++it)
    nodes.insert(it.key());
  for (auto it = node_specs.begin(); node_specs.is_object() && it != node_specs.end(); ++it) {
    const Json& ns = it.value();
    std::string kind = ns.is_object() ? ns.value("kind", "") : "";
    const NodeFactory* f = kinds.find(kind);
    if (!f) {
      std::string known;
      for (const auto& n : kinds.names()) known += (known.empty() ? "" : ", ") + n;
      problems.push_back("node '" + it.key() + "': unknown kind '" + kind + "' (known: " + known + ")");
      continue;
    }
    NodeSpecContext ctx{it.key(), ns, channels, nodes, problems, kinds};
    BuiltNode b = (*f)(ctx);
    g.node(it.key(), b.fn ? b.fn : [](NodeContext&) -> Result<NodeOutput> { return NodeOutput(); },
           parse_retry(ns.value("retry", Json()), it.key(), problems), b.subgraph);
    if (b.router) g.branch(it.key(), b.router, b.targets);
  }
  const Json edges = spec.value("edges", Json::array());
  if (!edges.is_array()) problems.push_back("'edges' must be a list of [from, to] pairs");
  for (const auto& e : edges.is_array() ? edges : Json::array()) {
    if (!e.is_array() || e.size() != 2 || !e[0].is_string() || !e[1].is_string()) {
      problems.push_back("each edge must be [from, to]");
      continue;
    }
    g.edge(e[0], e[1]);
  }
  const Json joins = spec.value("joins", Json::array());
  for (const auto& j : joins.is_array() ? joins : Json::array()) {
    if (!j.is_object() || !j.contains("from") || !j.contains("to") || !j["to"].is_string()) {
      problems.push_back("each join must be {\"from\": [...], \"to\": node}");
      continue;
    }
    g.join(names_of(j["from"]), j["to"]);
  }
  // The builder adds its own checks (unknown nodes in edges, no entry, unreachable nodes).
  auto compiled = g.compile();
  if (!compiled) {
    std::string m = compiled.error().message;
    const std::string prefix = "invalid graph: ";
    if (m.rfind(prefix, 0) == 0) m = m.substr(prefix.size());
    problems.push_back(m);
  }
  if (!problems.empty()) {
    std::string msg = "invalid graph spec: ";
    for (size_t i = 0; i < problems.size(); ++i) msg += (i ? "; " : "") + problems[i];
    return Error::invalid_argument(msg);
  }
  return compiled;
}

}  // namespace ap::graph
