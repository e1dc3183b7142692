#include "llm/routes.h"

#include <nlohmann/json.hpp>

#include "net/http_client.h"
#include "store/tx.h"

namespace ap::llm {

namespace {

constexpr const char* kColumns =
    "name, provider, upstream_model, base_url, credential, prices, script, metadata, "
    "to_json(created_at)#>>'{}', to_json(updated_at)#>>'{}', extract(epoch FROM created_at)::bigint";

ModelRoute from_row(const store::Rows& rows, int i) {
  ModelRoute r;
  r.name = rows.get(i, 0);
  r.provider = rows.get(i, 1);
  r.upstream_model = rows.get(i, 2);
  r.base_url = rows.is_null(i, 3) ? "" : std::string(rows.get(i, 3));
  r.credential = rows.is_null(i, 4) ? "" : std::string(rows.get(i, 4));
  if (!rows.is_null(i, 5)) {
    r.prices = Json::parse(rows.get(i, 5));
    if (auto p = Price::from_json(r.prices)) r.price = *p;
  }
  if (!rows.is_null(i, 6)) r.script = Json::parse(rows.get(i, 6));
  r.metadata = Json::parse(rows.get(i, 7));
  r.created_at = rows.get(i, 8);
  r.updated_at = rows.get(i, 9);
  r.created_unix = std::stoll(std::string(rows.get(i, 10)));
  return r;
}

bool valid_name(const std::string& n) {
  if (n.empty() || n.size() > 200) return false;
  for (char c : n)
    if (!std::isalnum(static_cast<unsigned char>(c)) && std::string_view("._:/-@+").find(c) == std::string_view::npos)
      return false;
  return true;
}

}  // namespace

Json ModelRoute::to_json() const {
  Json j = {{"name", name},          {"provider", provider},   {"upstream_model", upstream_model},
            {"base_url", base_url.empty() ? Json(nullptr) : Json(base_url)},
            {"credential", credential.empty() ? Json(nullptr) : Json(credential)},
            {"prices", prices},      {"metadata", metadata},   {"created_at", created_at},
            {"updated_at", updated_at}};
  if (provider == "scripted") j["script"] = script;
  return j;
}

Result<ModelRoute> ModelRoute::parse(std::string name, const Json& body) {
  if (!valid_name(name))
    return Error::invalid_argument("model name must be 1-200 characters of letters, digits and ._:/-@+");
  if (!body.is_object()) return Error::invalid_argument("body must be a JSON object");
  static const std::vector<std::string> known = {"provider", "upstream_model", "base_url", "credential",
                                                 "prices",   "script",         "metadata"};
  for (auto it = body.begin(); it != body.end(); ++it)
    if (std::find(known.begin(), known.end(), it.key()) == known.end())
      return Error::invalid_argument("unknown field '" + it.key() +
                                     "' (known: provider, upstream_model, base_url, credential, prices, script, metadata)");
  ModelRoute r;
  r.name = std::move(name);
  auto str = [&](const char* f, std::string& out) -> Status {
    auto it = body.find(f);
    if (it == body.end() || it->is_null()) return {};
    if (!it->is_string()) return Error::invalid_argument(std::string(f) + " must be a string");
    out = it->get<std::string>();
    return {};
  };
  AP_RETURN_IF_ERROR(str("provider", r.provider));
  if (r.provider != "openai" && r.provider != "anthropic" && r.provider != "scripted")
    return Error::invalid_argument("provider is required: openai, anthropic or scripted");
  AP_RETURN_IF_ERROR(str("upstream_model", r.upstream_model));
  AP_RETURN_IF_ERROR(str("base_url", r.base_url));
  AP_RETURN_IF_ERROR(str("credential", r.credential));
  if (r.provider == "scripted") {
    if (!r.base_url.empty() || !r.credential.empty())
      return Error::invalid_argument("a scripted route has no base_url or credential");
    if (!body.contains("script")) return Error::invalid_argument("script is required for the scripted provider");
    r.script = body["script"];
    if (auto problems = check_script(r.script); !problems.empty()) return Error::invalid_argument("script: " + problems.front());
    if (r.upstream_model.empty()) r.upstream_model = r.name;
  } else {
    if (body.contains("script")) return Error::invalid_argument("script is only for the scripted provider");
    if (r.upstream_model.empty() || r.upstream_model.size() > 200)
      return Error::invalid_argument("upstream_model is required (1-200 characters)");
    if (!r.base_url.empty()) {
      auto u = net::Url::parse(r.base_url);
      if (!u) return Error::invalid_argument("base_url: " + u.error().message);
      if (r.base_url.size() > 2000) return Error::invalid_argument("base_url is too long");
    }
    if (!r.credential.empty() && (r.credential.size() > 200 || !valid_name(r.credential)))
      return Error::invalid_argument("credential must name a credential in the vault");
  }
  if (auto p = body.find("prices"); p != body.end() && !p->is_null()) {
    auto price = Price::from_json(*p);
    if (!price) return Error::invalid_argument("prices: " + price.error().message);
    r.price = *price;
    r.prices = *p;
  }
  if (auto m = body.find("metadata"); m != body.end() && !m->is_null()) {
    if (!m->is_object()) return Error::invalid_argument("metadata must be an object");
    r.metadata = *m;
  }
  return r;
}

store::Task<std::pair<ModelRoute, bool>> ModelRoutes::put(store::Pool& pool, const TenantId& tenant, ModelRoute r) {
  const std::string sql = std::string(
      "INSERT INTO model_routes (tenant_id, name, provider, upstream_model, base_url, credential, prices, script, metadata) "
      "VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9::jsonb) "
      "ON CONFLICT (tenant_id, name) DO UPDATE SET provider = excluded.provider, upstream_model = excluded.upstream_model, "
      "base_url = excluded.base_url, credential = excluded.credential, prices = excluded.prices, script = excluded.script, "
      "metadata = excluded.metadata, updated_at = now() RETURNING ") + kColumns + ", (xmax = 0)";
  auto opt = [](const std::string& s) { return s.empty() ? store::Param() : store::Param(s); };
  std::vector<store::Param> p{tenant.to_string(), r.name, r.provider, r.upstream_model, opt(r.base_url), opt(r.credential),
                              r.prices.is_null() ? store::Param() : store::Param(r.prices.dump()),
                              r.script.is_null() ? store::Param() : store::Param(r.script.dump()), r.metadata.dump()};
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(pool, tenant, sql, std::move(p)));
  forget(tenant, r.name);
  co_return std::make_pair(from_row(rows, 0), rows.get(0, 11) == "t");
}

store::Task<std::vector<ModelRoute>> ModelRoutes::list(store::Pool& pool, const TenantId& tenant) {
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(pool, tenant,
                                                                 std::string("SELECT ") + kColumns + " FROM model_routes ORDER BY name"));
  std::vector<ModelRoute> out;
  for (int i = 0; i < rows.size(); ++i) out.push_back(from_row(rows, i));
  co_return out;
}

store::Task<std::shared_ptr<const ModelRoute>> ModelRoutes::find(store::Pool& pool, const TenantId& tenant, std::string name) {
  const std::string key = tenant.to_string() + "/" + name;
  {
    std::lock_guard lock(mu_);
    auto it = cache_.find(key);
    if (it != cache_.end() && std::chrono::steady_clock::now() - it->second.at < ttl_) {
      if (!it->second.route) co_return Error::not_found("model '" + name + "' not found");
      co_return it->second.route;
    }
  }
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(pool, tenant,
                                                                 std::string("SELECT ") + kColumns + " FROM model_routes WHERE name = $1",
                                                                 store::params(name)));
  std::shared_ptr<const ModelRoute> route;
  if (!rows.empty()) route = std::make_shared<const ModelRoute>(from_row(rows, 0));
  {
    std::lock_guard lock(mu_);
    if (cache_.size() > 10000) cache_.clear();
    cache_[key] = Cached{route, std::chrono::steady_clock::now()};
  }
  if (!route) co_return Error::not_found("model '" + name + "' not found");
  co_return route;
}

store::Task<void> ModelRoutes::remove(store::Pool& pool, const TenantId& tenant, std::string name) {
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(pool, tenant, "DELETE FROM model_routes WHERE name = $1",
                                                                 store::params(name)));
  forget(tenant, name);
  if (rows.affected() == 0) co_return Error::not_found("model '" + name + "' not found");
  co_return Status{};
}

void ModelRoutes::forget(const TenantId& tenant, const std::string& name) {
  std::lock_guard lock(mu_);
  cache_.erase(tenant.to_string() + "/" + name);
}

}  // namespace ap::llm
