// What LangGraph's API shows of a graph, computed from its spec: the drawable graph (nodes and
// edges, with subgraphs inlined when `xray`), JSON Schemas of its input, output, state and
// config, and its subgraphs by namespace. Pure functions.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace ap::control {

nlohmann::json drawable_graph(const nlohmann::json& spec, bool xray);
nlohmann::json graph_schemas(const std::string& graph_id, const nlohmann::json& spec);
nlohmann::json graph_subgraphs(const std::string& graph_id, const nlohmann::json& spec, const std::string& ns,
                               bool recurse);

}  // namespace ap::control
