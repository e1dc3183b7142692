// Request-body helpers for handlers: parse a JSON object and read typed fields, each failure an
// InvalidArgument that names the field. Include only from handler .cc files (pulls in JSON).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/ids.h"
#include "common/result.h"
#include "gateway/http.h"

namespace ap::gateway {

using nlohmann::json;

// The body as a JSON object; an empty body is {} when `allow_empty`.
Result<json> object_body(const Request& req, bool allow_empty = false);
Result<std::string> required_string(const json& obj, const char* field);
Result<std::optional<std::vector<std::string>>> optional_string_list(const json& obj,
                                                                      const char* field);
// A path parameter that must be a UUID; NotFound otherwise (a malformed id names nothing).
template <class IdT>
Result<IdT> path_id(std::string_view text, const char* what) {
  auto id = IdT::parse(text);
  if (!id) return Error::not_found(std::string(what) + " not found");
  return *id;
}

struct PageParams {
  std::optional<Uuid> after;
  int limit = 100;
};
// ?limit=1..1000&after=<uuid>. InvalidArgument for bad values.
Result<PageParams> page_params(const Request& req);

std::string dump(const json& j);

}  // namespace ap::gateway
