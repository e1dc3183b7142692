#include "control/graph_view.h"

#include <set>

namespace ap::control {
namespace {

using Json = nlohmann::json;

// Adds a graph's nodes and edges under `prefix` ("" for the root). With `xray`, a subgraph node
// is replaced by its own graph under "<name>:", whose __start__ and __end__ take the node's
// place in the parent's edges.
void add_graph(const Json& spec, const std::string& prefix, bool xray, Json& nodes, Json& edges) {
  auto id = [&](const std::string& n) { return prefix.empty() ? n : prefix + ":" + n; };
  const Json node_specs = spec.value("nodes", Json::object());
  std::set<std::string> expanded;
  nodes.push_back({{"id", id("__start__")}, {"type", "schema"}, {"data", id("__start__")}});
  for (const auto& [name, n] : node_specs.items()) {
    if (xray && n.value("kind", "") == "subgraph" && n.contains("spec")) {
      add_graph(n["spec"], id(name), xray, nodes, edges);
      expanded.insert(name);
      continue;
    }
    nodes.push_back({{"id", id(name)}, {"type", "runnable"},
                     {"data", {{"id", Json::array({"agentplane", n.value("kind", "node")})}, {"name", name}}},
                     {"metadata", {{"kind", n.value("kind", "node")}}}});
  }
  nodes.push_back({{"id", id("__end__")}, {"type", "schema"}, {"data", id("__end__")}});
  auto source = [&](const std::string& n) { return expanded.count(n) ? id(n) + ":__end__" : id(n); };
  auto target = [&](const std::string& n) { return expanded.count(n) ? id(n) + ":__start__" : id(n); };
  for (const auto& e : spec.value("edges", Json::array()))
    if (e.is_array() && e.size() == 2) edges.push_back({{"source", source(e[0])}, {"target", target(e[1])}});
  for (const auto& j : spec.value("joins", Json::array()))
    for (const auto& from : j.value("from", Json::array()))
      edges.push_back({{"source", source(from)}, {"target", target(j.value("to", ""))}});
  for (const auto& [name, n] : node_specs.items()) {
    const std::string kind = n.value("kind", "");
    std::vector<std::string> targets;
    if (kind == "router") {
      for (const auto& c : n.value("cases", Json::array())) {
        const Json go = c.value("goto", Json());
        if (go.is_string()) targets.push_back(go);
        if (go.is_array())
          for (const auto& g : go) targets.push_back(g);
      }
      targets.push_back(n.value("default", "__end__"));
    } else if (kind == "send" && n.contains("node")) {
      targets.push_back(n["node"]);
    } else if (kind == "interrupt" && n.contains("goto")) {
      targets.push_back(n["goto"]);
    }
    std::sort(targets.begin(), targets.end());
    targets.erase(std::unique(targets.begin(), targets.end()), targets.end());
    for (const auto& t : targets)
      edges.push_back({{"source", source(name)}, {"target", target(t)}, {"conditional", true}});
  }
}

Json state_schema(const std::string& title, const Json& spec) {
  Json props = Json::object();
  const Json channels = spec.value("channels", Json::object());  // items() of a temporary would dangle
  for (const auto& [name, ch] : channels.items()) {
    std::string reducer = ch.is_string() ? ch.get<std::string>() : ch.value("reducer", "last_value");
    if (reducer == "ephemeral") continue;
    Json p = {{"title", name}};
    if (reducer == "messages" || reducer == "append" || reducer == "topic") p["type"] = "array";
    if (reducer == "merge") p["type"] = "object";
    p["x-reducer"] = reducer;
    props[name] = p;
  }
  return {{"title", title}, {"type", "object"}, {"properties", props}};
}

void collect(const Json& spec, const std::string& prefix, bool recurse, Json& out) {
  const Json nodes = spec.value("nodes", Json::object());
  for (const auto& [name, n] : nodes.items()) {
    if (n.value("kind", "") != "subgraph" || !n.contains("spec")) continue;
    std::string ns = prefix.empty() ? name : prefix + "|" + name;
    out[ns] = graph_schemas(name, n["spec"]);
    if (recurse) collect(n["spec"], ns, recurse, out);
  }
}

}  // namespace

Json drawable_graph(const Json& spec, bool xray) {
  Json nodes = Json::array(), edges = Json::array();
  add_graph(spec, "", xray, nodes, edges);
  return {{"nodes", nodes}, {"edges", edges}};
}

Json graph_schemas(const std::string& graph_id, const Json& spec) {
  Json state = state_schema(graph_id, spec);
  return {{"graph_id", graph_id},
          {"input_schema", state},
          {"output_schema", state},
          {"state_schema", state},
          {"config_schema", {{"title", "Configurable"}, {"type", "object"}, {"properties", Json::object()}}},
          {"context_schema", nullptr}};
}

Json graph_subgraphs(const std::string&, const Json& spec, const std::string& ns, bool recurse) {
  Json all = Json::object();
  collect(spec, "", recurse, all);
  if (ns.empty()) return all;
  Json out = Json::object();
  for (const auto& [k, v] : all.items())
    if (k == ns || k.starts_with(ns + "|")) out[k] = v;
  return out;
}

}  // namespace ap::control
