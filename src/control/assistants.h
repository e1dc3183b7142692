// Assistants: a graph plus configuration, versioned, as LangGraph's API has them. Every change
// is a new version; "latest" may be moved back to any version. A graph id is accepted wherever
// an assistant id is (its default assistant). Objects are returned in LangGraph's shapes.
#pragma once

#include "control/common.h"

namespace ap::control {

class Graphs;

// What a run needs of its assistant.
struct AssistantRef {
  Uuid assistant_id;
  std::string graph_id;
  int version = 0;
  Json config = Json::object();
  Json context = Json::object();
  Json metadata = Json::object();
};

class Assistants {
 public:
  explicit Assistants(Graphs& graphs) : graphs_(graphs) {}

  // POST /assistants: {graph_id, assistant_id?, config?, context?, metadata?, name?,
  // description?, if_exists: raise|do_nothing}.
  Task<Json> create(Scope s, Json body);
  Task<Json> get(Scope s, std::string id);
  // PATCH: a new version from the latest with the given fields (metadata is merged).
  Task<Json> update(Scope s, std::string id, Json body);
  Task<void> remove(Scope s, std::string id);
  // POST /assistants/search: {metadata?, graph_id?, name?, limit, offset, sort_by, sort_order}.
  Task<Json> search(Scope s, Json body);
  Task<int64_t> count(Scope s, Json body);
  Task<Json> versions(Scope s, std::string id, Json body);
  Task<Json> set_latest(Scope s, std::string id, Json body);
  // GET /assistants/{id}/graph, /schemas, /subgraphs.
  Task<Json> graph_view(Scope s, std::string id, bool xray);
  Task<Json> schemas(Scope s, std::string id);
  Task<Json> subgraphs(Scope s, std::string id, std::string ns, bool recurse);

  // An assistant id or a graph id (its default assistant, created on first use for built-ins).
  Task<AssistantRef> resolve(Scope s, std::string id);

 private:
  Task<Json> spec_of(Scope s, std::string id, std::string* graph_id);
  Graphs& graphs_;
};

}  // namespace ap::control
