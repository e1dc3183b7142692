// Shared by the agent API handlers (assistants, threads, runs): the control plane of the
// request, its scope, and JSON bodies the LangGraph way (an empty body is {}). Include only from
// handler .cc files.
#pragma once

#include "control/plane.h"
#include "gateway/handlers/audit_context.h"
#include "gateway/handlers/json_body.h"

namespace ap::gateway {

inline Result<control::Plane*> plane(const RequestContext& ctx) {
  if (!ctx.services.agents) return Error::unavailable("the agent API is not enabled on this server");
  return ctx.services.agents;
}

// The body as JSON (any value; empty: {}). InvalidArgument when it is not JSON.
inline Result<json> any_body(const Request& req) {
  if (req.body.empty()) return json::object();
  auto j = json::parse(req.body, nullptr, false);
  if (j.is_discarded()) return Error::invalid_argument("the body is not valid JSON");
  return j;
}

inline Response no_content() { return Response{204, "application/json", "", {}}; }

// A page of search results with LangGraph's pagination headers (`body` has the offset).
inline Response paginated(const json& items, int64_t total, const json& body) {
  Response r = Response::json(200, dump(items));
  int64_t offset = body.is_object() ? body.value("offset", 0) : 0;
  int64_t next = offset + static_cast<int64_t>(items.size());
  r.headers.push_back({"x-pagination-total", std::to_string(total)});
  if (next < total) r.headers.push_back({"x-pagination-next", std::to_string(next)});
  return r;
}

}  // namespace ap::gateway
