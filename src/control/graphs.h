// A tenant's graphs: JSON specs (docs/graph_spec.md) stored per tenant under row-level security,
// plus built-in templates every tenant sees under reserved ids ("builtin.*", which a tenant
// cannot register). Registering a graph also creates its default assistant (LangGraph's: id =
// uuid5(graph namespace, graph id)), so a graph id works wherever an assistant id does.
// Compiled graphs are cached by (tenant, graph id, last update). Thread-safe.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "control/common.h"

namespace ap::graph {
class CompiledGraph;
class NodeKinds;
}  // namespace ap::graph

namespace ap::control {

struct LoadedGraph {
  std::string graph_id;
  Json spec;
  std::shared_ptr<const graph::CompiledGraph> graph;
};

class Graphs {
 public:
  // `kinds`: the node kinds specs may use (the registry outlives this).
  explicit Graphs(const graph::NodeKinds& kinds);
  ~Graphs();

  // Validates and stores a spec (201 on creation: `created`). InvalidArgument lists every problem.
  Task<Json> put(Scope s, std::string graph_id, Json spec, bool* created = nullptr);
  Task<Json> get(Scope s, std::string graph_id);
  Task<Json> list(Scope s);
  // Deletes the spec and its default assistant; FailedPrecondition while other assistants use it.
  Task<void> remove(Scope s, std::string graph_id);
  // The compiled graph (from the cache when the spec did not change). `version`: the spec's
  // `updated_at` as the caller read it (e.g. joined to the run's row); when given and cached,
  // nothing is read from the database.
  Task<LoadedGraph> load(Scope s, std::string graph_id, std::string version = "");
  // Whether the tenant has this graph (built-ins included).
  Task<bool> exists(Scope s, std::string graph_id);

  static bool reserved(std::string_view graph_id) { return graph_id.starts_with("builtin."); }
  static Uuid default_assistant_id(std::string_view graph_id);
  // The built-in templates, by id.
  static const std::unordered_map<std::string, Json>& builtins();

 private:
  Result<std::shared_ptr<const graph::CompiledGraph>> compile(const std::string& key, const Json& spec);
  std::optional<LoadedGraph> cached(const std::string& key);
  const graph::NodeKinds& kinds_;
  std::mutex mu_;
  std::unordered_map<std::string, LoadedGraph> cache_;  // tenant|id|updated
};

// Creates the default assistant of `graph_id` if missing (in the caller's unit of work).
Task<void> ensure_default_assistant(Scope s, std::string graph_id);

}  // namespace ap::control
