// What every control-plane call gets and returns. A call works for one tenant (audit::Context:
// tenant, actor, request id, the shard's pool) and returns API objects as JSON, in LangGraph's
// shapes (docs/agent_api.md).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "audit/audit_log.h"
#include "common/result.h"

namespace ap::control {

using Json = nlohmann::json;
template <class T>
using Task = boost::asio::awaitable<Result<T>>;
using Scope = audit::Context;

// Ids in paths and bodies: a UUID in canonical form, else NotFound naming `what`.
Result<Uuid> parse_id(std::string_view text, const char* what);
// Reads an optional field of type object; InvalidArgument naming it otherwise.
Result<Json> object_field(const Json& body, const char* field, Json fallback = Json::object());
// limit (1..1000, default `def`) and offset (>= 0) of a search body.
struct Paging {
  int limit = 10;
  int64_t offset = 0;
};
Result<Paging> paging(const Json& body, int def = 10);
// `select`: the fields to keep of each object in `items` (absent or empty: all). InvalidArgument
// when it is not a list of strings.
Result<Json> project(Json items, const Json& select);

}  // namespace ap::control
