#include "control/common.h"

#include <algorithm>

namespace ap::control {

Result<Uuid> parse_id(std::string_view text, const char* what) {
  auto id = Uuid::parse(text);
  if (!id) return Error::not_found(std::string(what) + " not found");
  return *id;
}

Result<Json> object_field(const Json& body, const char* field, Json fallback) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return fallback;
  if (!it->is_object()) return Error::invalid_argument(std::string("'") + field + "' must be an object");
  return *it;
}

Result<Paging> paging(const Json& body, int def) {
  Paging p;
  p.limit = def;
  auto lim = body.find("limit");
  if (lim != body.end() && !lim->is_null()) {
    if (!lim->is_number_integer() || *lim < 1 || *lim > 1000)
      return Error::invalid_argument("'limit' must be an integer from 1 to 1000");
    p.limit = lim->get<int>();
  }
  auto off = body.find("offset");
  if (off != body.end() && !off->is_null()) {
    if (!off->is_number_integer() || *off < 0) return Error::invalid_argument("'offset' must be an integer >= 0");
    p.offset = off->get<int64_t>();
  }
  return p;
}

Result<Json> project(Json items, const Json& select) {
  if (select.is_null() || (select.is_array() && select.empty())) return items;
  if (!select.is_array() || !std::all_of(select.begin(), select.end(), [](const Json& f) { return f.is_string(); }))
    return Error::invalid_argument("'select' must be a list of field names");
  Json out = Json::array();
  for (const auto& item : items) {
    Json kept = Json::object();
    for (const auto& f : select)
      if (auto it = item.find(f.get<std::string>()); it != item.end()) kept[f.get<std::string>()] = *it;
    out.push_back(std::move(kept));
  }
  return out;
}

}  // namespace ap::control
