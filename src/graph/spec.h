// Graphs as data: a JSON graph spec (docs/graph_spec.md, docs/graph_spec.schema.json) names
// the state's channels and reducers, the nodes (by kind) and the edges. Node kinds come from a
// registry, so later kinds (llm, tools, code, http) plug in without touching the engine.
// Thread-safety: a NodeKinds registry is read-only once built; compile_spec is pure.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "graph/graph.h"

namespace ap::graph {

// What a node factory gets: the node's spec ({"kind": ..., ...}) and what it may refer to.
struct NodeSpecContext {
  const std::string& name;
  const Json& spec;
  const std::set<std::string>& channels;
  const std::set<std::string>& nodes;  // includes __end__
  std::vector<std::string>& problems;
  const class NodeKinds& kinds;  // for kinds that embed specs (subgraph)
  void problem(const std::string& what) const { problems.push_back("node '" + name + "': " + what); }
  // Checks that a path starts with a known channel (or $item when `item_ok`).
  void check_path(const Json& path, bool item_ok = false) const;
  // Checks a value expression / condition statically (paths, operators).
  void check_value(const Json& expr, bool item_ok = false) const;
  void check_condition(const Json& cond) const;
};

// What a factory makes: the node's function and, for kinds that choose where to go next
// (router, send), a router with the targets it may reach.
struct BuiltNode {
  NodeFn fn;
  RouterFn router;                   // may be empty
  std::vector<std::string> targets;  // what `router` may return (nodes, __end__)
  std::shared_ptr<const CompiledGraph> subgraph;  // what `fn` runs as its subgraph, if any
};

// Builds a node from its spec. Problems go to ctx.problems; the node is then never run.
using NodeFactory = std::function<BuiltNode(const NodeSpecContext& ctx)>;

class NodeKinds {
 public:
  // The built-in kinds: router, set, interrupt, send.
  static NodeKinds builtin();
  NodeKinds& add(std::string kind, NodeFactory factory);
  const NodeFactory* find(const std::string& kind) const;
  std::vector<std::string> names() const;

 private:
  std::map<std::string, NodeFactory> kinds_;
};

// Validates and compiles a spec. InvalidArgument listing every problem (unknown kind, bad
// reducer, edge to nowhere, unreachable node, bad condition, unknown channel in a path, ...).
Result<std::shared_ptr<const CompiledGraph>> compile_spec(const Json& spec, const NodeKinds& kinds);

// Expressions over the state, shared by the built-in kinds (and later ones).
// A path: "attempts", "messages[-1].tool_calls", "doc.sections[0].title"; "$item" and
// "$item.x" refer to a Send/fan-out item.
Json eval_path(const NodeContext& ctx, std::string_view path, const Json* item = nullptr);
// A value: a plain JSON value (literal), {"literal": v}, {"from": path}, {"template": "a {{p}}"},
// {"increment": path, "by": n}.
Result<Json> eval_value(const NodeContext& ctx, const Json& expr, const Json* item = nullptr);
// A condition: {"path", "op", "value"} with op in ==, !=, <, <=, >, >=, in, contains, exists,
// empty; or {"and": [...]}, {"or": [...]}, {"not": c}.
Result<bool> eval_condition(const NodeContext& ctx, const Json& cond);

}  // namespace ap::graph
