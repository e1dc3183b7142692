#include "control/store_items.h"

#include "store/tx.h"

namespace ap::control {
namespace {

constexpr const char* kItemJson =
    "jsonb_build_object('namespace', to_jsonb(namespace), 'key', key, 'value', value, 'created_at', created_at, "
    "'updated_at', updated_at)::text";
// Expired items are invisible before the sweep removes them.
constexpr const char* kLive = "(expires_at IS NULL OR expires_at > now())";

// A namespace: 1..32 non-empty labels without '.'.
Result<std::vector<std::string>> labels(const Json& v, const char* field, bool allow_empty) {
  if (v.is_null() && allow_empty) return std::vector<std::string>();
  if (!v.is_array()) return Error::invalid_argument(std::string("'") + field + "' must be a list of labels");
  if (v.size() > 32 || (v.empty() && !allow_empty))
    return Error::invalid_argument(std::string("'") + field + "' must have 1 to 32 labels");
  std::vector<std::string> out;
  for (const auto& l : v) {
    if (!l.is_string() || l.get<std::string>().empty() || l.get<std::string>().find('.') != std::string::npos)
      return Error::invalid_argument(std::string("'") + field + "' labels must be non-empty strings without '.'");
    out.push_back(l);
  }
  return out;
}

std::string pg_array(const std::vector<std::string>& v) {
  std::string out = "{";
  for (const auto& s : v) {
    if (out.size() > 1) out += ',';
    out += '"';
    for (char c : s) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

Result<std::string> key_of(const Json& body) {
  auto k = body.find("key");
  if (k == body.end() || !k->is_string() || k->get<std::string>().empty() || k->get<std::string>().size() > 1024)
    return Error::invalid_argument("'key' must be a string of 1 to 1024 characters");
  return k->get<std::string>();
}

}  // namespace

Task<void> StoreItems::put(Scope s, Json body) {
  if (!body.is_object()) co_return Error::invalid_argument("the body must be a JSON object");
  AP_CO_ASSIGN_OR_RETURN(auto ns, labels(body.value("namespace", Json()), "namespace", false));
  AP_CO_ASSIGN_OR_RETURN(std::string key, key_of(body));
  if (!body.contains("value") || !body["value"].is_object()) co_return Error::invalid_argument("'value' must be an object");
  if (body.contains("index") && !body["index"].is_null() && body["index"] != false)
    co_return Error::unimplemented("semantic indexing of store items is not supported yet (pass index: false)");
  store::Param ttl;
  if (auto t = body.find("ttl"); t != body.end() && !t->is_null()) {
    if (!t->is_number() || t->get<double>() <= 0) co_return Error::invalid_argument("'ttl' must be a positive number of minutes");
    ttl = std::to_string(t->get<double>());
  }
  AP_CO_RETURN_IF_ERROR(co_await store::tenant_query(
      *s.pool, s.tenant,
      "INSERT INTO store_items (tenant_id, namespace, key, value, expires_at) VALUES ($1, $2::text[], $3, $4::jsonb, "
      "now() + $5::float8 * interval '1 minute') ON CONFLICT (tenant_id, namespace, key) DO UPDATE SET "
      "value = EXCLUDED.value, expires_at = EXCLUDED.expires_at, updated_at = now()",
      store::params(s.tenant.to_string(), pg_array(ns), key, body["value"].dump(), ttl)));
  co_return ok_status();
}

Task<Json> StoreItems::get(Scope s, std::string dotted, std::string key, bool refresh_ttl) {
  std::vector<std::string> ns;
  for (size_t start = 0;;) {
    size_t dot = dotted.find('.', start);
    ns.push_back(dotted.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  AP_CO_RETURN_IF_ERROR(labels(Json(ns), "namespace", false));
  if (key.empty()) co_return Error::invalid_argument("'key' is required");
  (void)refresh_ttl;  // TTLs are absolute here: reading does not extend them
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(
                                        *s.pool, s.tenant,
                                        std::string("SELECT ") + kItemJson + " FROM store_items WHERE tenant_id = $1 AND "
                                            "namespace = $2::text[] AND key = $3 AND " + kLive,
                                        store::params(s.tenant.to_string(), pg_array(ns), key)));
  if (rows.empty()) co_return Json(nullptr);
  co_return Json::parse(rows.get(0, 0));
}

Task<void> StoreItems::remove(Scope s, Json body) {
  if (!body.is_object()) co_return Error::invalid_argument("the body must be a JSON object");
  AP_CO_ASSIGN_OR_RETURN(auto ns, labels(body.value("namespace", Json()), "namespace", false));
  AP_CO_ASSIGN_OR_RETURN(std::string key, key_of(body));
  AP_CO_RETURN_IF_ERROR(co_await store::tenant_query(
      *s.pool, s.tenant, "DELETE FROM store_items WHERE tenant_id = $1 AND namespace = $2::text[] AND key = $3",
      store::params(s.tenant.to_string(), pg_array(ns), key)));
  co_return ok_status();
}

Task<Json> StoreItems::search(Scope s, Json body) {
  if (body.is_null()) body = Json::object();
  if (!body.is_object()) co_return Error::invalid_argument("the body must be a JSON object");
  AP_CO_ASSIGN_OR_RETURN(auto prefix, labels(body.value("namespace_prefix", Json()), "namespace_prefix", true));
  AP_CO_ASSIGN_OR_RETURN(Json filter, object_field(body, "filter"));
  AP_CO_ASSIGN_OR_RETURN(auto page, paging(body));
  // `query` (semantic search) needs a vector index, which the store does not have yet: as
  // LangGraph's servers without an index, every item under the prefix matches.
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(
                                        *s.pool, s.tenant,
                                        std::string("SELECT ") + kItemJson + " FROM store_items WHERE tenant_id = $1 AND "
                                            "namespace[1:cardinality($2::text[])] = $2::text[] AND value @> $3::jsonb AND " + kLive +
                                            " ORDER BY updated_at DESC, namespace, key LIMIT $4::int OFFSET $5::bigint",
                                        store::params(s.tenant.to_string(), pg_array(prefix), filter.dump(),
                                                      std::to_string(page.limit), std::to_string(page.offset))));
  Json items = Json::array();
  for (int i = 0; i < rows.size(); ++i) items.push_back(Json::parse(rows.get(i, 0)));
  co_return Json{{"items", items}};
}

Task<Json> StoreItems::namespaces(Scope s, Json body) {
  if (body.is_null()) body = Json::object();
  if (!body.is_object()) co_return Error::invalid_argument("the body must be a JSON object");
  AP_CO_ASSIGN_OR_RETURN(auto prefix, labels(body.value("prefix", Json()), "prefix", true));
  AP_CO_ASSIGN_OR_RETURN(auto suffix, labels(body.value("suffix", Json()), "suffix", true));
  AP_CO_ASSIGN_OR_RETURN(auto page, paging(body, 100));
  int depth = 32;
  if (auto d = body.find("max_depth"); d != body.end() && !d->is_null()) {
    if (!d->is_number_integer() || *d < 1) co_return Error::invalid_argument("'max_depth' must be a positive integer");
    depth = std::min(32, d->get<int>());
  }
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(
                                        *s.pool, s.tenant,
                                        // In array order: a namespace before those under it.
                                        std::string("SELECT to_jsonb(ns)::text FROM (SELECT DISTINCT namespace[1:$4::int] AS ns FROM store_items "
                                                    "WHERE tenant_id = $1 AND namespace[1:cardinality($2::text[])] = $2::text[] AND "
                                                    "(cardinality($3::text[]) = 0 OR namespace[cardinality(namespace) - "
                                                    "cardinality($3::text[]) + 1:] = $3::text[]) AND ") + kLive +
                                            ") x ORDER BY ns LIMIT $5::int OFFSET $6::bigint",
                                        store::params(s.tenant.to_string(), pg_array(prefix), pg_array(suffix),
                                                      std::to_string(depth), std::to_string(page.limit),
                                                      std::to_string(page.offset))));
  Json out = Json::array();
  for (int i = 0; i < rows.size(); ++i) out.push_back(Json::parse(rows.get(i, 0)));
  co_return Json{{"namespaces", out}};
}

}  // namespace ap::control
