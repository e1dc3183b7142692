// The agent node kinds, added to the engine's registry next to the built-in ones:
// - `llm`: calls a model (a tenant's model route, by name) with the messages of a channel, an
//   optional system prompt and prompt (value expressions over the state: templates), and bound
//   tools; streams its tokens to the `messages` stream mode; appends the AI message.
// - `tools`: runs the tool calls of the last AI message of a channel and appends one tool
//   message per call (errors included, as status "error", so the model can recover).
// - `code`: runs a script in the sandbox with the state as JSON on stdin; the JSON object it
//   prints is the node's update (graph/nodes/code.h).
// All reach the platform through the run's RunServices (graph/nodes/run_services.h).
// Spec fields: docs/graph_spec.md.
#pragma once

#include "graph/spec.h"

namespace ap::graph::nodes {

// Adds llm, tools and code to `kinds`.
void add_agent_kinds(NodeKinds& kinds);
// The built-in kinds plus the agent kinds: what the server compiles tenants' specs with.
NodeKinds all_kinds();

}  // namespace ap::graph::nodes
