#include "gateway/handlers/json_body.h"

#include "common/json.h"

namespace ap::gateway {

Result<json> object_body(const Request& req, bool allow_empty) {
  if (req.body.empty() && allow_empty) return json::object();
  AP_ASSIGN_OR_RETURN(json j, parse_json(req.body));
  if (!j.is_object()) return Error::invalid_argument("request body must be a JSON object");
  return j;
}

Result<std::string> required_string(const json& obj, const char* field) {
  auto it = obj.find(field);
  if (it == obj.end()) return Error::invalid_argument(std::string("'") + field + "' is required");
  if (!it->is_string())
    return Error::invalid_argument(std::string("'") + field + "' must be a string");
  return it->get<std::string>();
}

Result<std::optional<std::vector<std::string>>> optional_string_list(const json& obj,
                                                                      const char* field) {
  auto it = obj.find(field);
  if (it == obj.end() || it->is_null()) return std::optional<std::vector<std::string>>();
  if (!it->is_array())
    return Error::invalid_argument(std::string("'") + field + "' must be a list of strings");
  std::vector<std::string> out;
  for (const auto& v : *it) {
    if (!v.is_string())
      return Error::invalid_argument(std::string("'") + field + "' must be a list of strings");
    out.push_back(v.get<std::string>());
  }
  return std::optional<std::vector<std::string>>(std::move(out));
}

Result<PageParams> page_params(const Request& req) {
  PageParams p;
  if (auto l = req.query_param("limit")) {
    char* end = nullptr;
    long v = std::strtol(l->c_str(), &end, 10);
    if (l->empty() || *end || v < 1 || v > 1000)
      return Error::invalid_argument("'limit' must be an integer from 1 to 1000");
    p.limit = static_cast<int>(v);
  }
  if (auto a = req.query_param("after")) {
    auto u = Uuid::parse(*a);
    if (!u) return Error::invalid_argument("'after' must be an id");
    p.after = *u;
  }
  return p;
}

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace ap::gateway
