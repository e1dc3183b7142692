// Model routes: the models a tenant may call, by the name its clients use -> provider, upstream
// model, base URL, the vault credential holding the provider key, an optional price override and,
// for the scripted provider, its script. Stored per tenant under RLS (table model_routes).
// Lookups are cached per process for `cache_ttl` (a change on another replica is seen within
// that time; on this replica at once). Thread-safe.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/ids.h"
#include "llm/chat.h"
#include "llm/prices.h"
#include "store/pool.h"

namespace ap::llm {

struct ModelRoute {
  std::string name;
  std::string provider;  // openai | anthropic | scripted
  std::string upstream_model;
  std::string base_url;    // empty: the provider's public API
  std::string credential;  // vault credential name; empty: no key (local servers, scripted)
  std::optional<Price> price;  // override of the price table
  Json prices = nullptr;       // the override as given (LiteLLM fields)
  Json script = nullptr;       // scripted
  Json metadata = Json::object();
  std::string created_at, updated_at;
  int64_t created_unix = 0;

  // The OpenAI-style model object and the full route (GET /v1/model-routes).
  Json to_json() const;
  // Validates a PUT body. InvalidArgument naming the field.
  static Result<ModelRoute> parse(std::string name, const Json& body);
};

class ModelRoutes {
 public:
  explicit ModelRoutes(std::chrono::milliseconds cache_ttl = std::chrono::seconds(5)) : ttl_(cache_ttl) {}

  // Creates or replaces; returns the stored route and whether it was created.
  store::Task<std::pair<ModelRoute, bool>> put(store::Pool& pool, const TenantId& tenant, ModelRoute route);
  store::Task<std::vector<ModelRoute>> list(store::Pool& pool, const TenantId& tenant);
  // NotFound when the tenant has no such model.
  store::Task<std::shared_ptr<const ModelRoute>> find(store::Pool& pool, const TenantId& tenant, std::string name);
  store::Task<void> remove(store::Pool& pool, const TenantId& tenant, std::string name);

 private:
  struct Cached {
    std::shared_ptr<const ModelRoute> route;  // null: known absent
    std::chrono::steady_clock::time_point at;
  };
  void forget(const TenantId& tenant, const std::string& name);
  std::chrono::milliseconds ttl_;
  std::mutex mu_;
  std::unordered_map<std::string, Cached> cache_;  // "<tenant>/<name>"
};

}  // namespace ap::llm
