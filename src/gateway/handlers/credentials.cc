// Credentials API: PUT/GET/DELETE /v1/credentials[/{name}]. Write-only: no response ever
// carries a value; the server decrypts one only for its own model and tool calls.
#include "gateway/handlers/audit_context.h"
#include "gateway/handlers/json_body.h"
#include "gateway/routes.h"
#include "vault/credentials.h"

namespace ap::gateway {
namespace {

using Task = boost::asio::awaitable<Result<Response>>;

Result<vault::CredentialStore*> store_of(const RequestContext& ctx) {
  if (!ctx.services.credentials)
    return Error::unavailable("the credential vault is not configured: start the server with a master key");
  return ctx.services.credentials;
}

Task put_credential(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* store, store_of(ctx));
  AP_CO_ASSIGN_OR_RETURN(json body, object_body(ctx.request));
  vault::PutCredential c;
  c.name = std::string(ctx.param("name"));
  AP_CO_RETURN_IF_ERROR(vault::CredentialStore::validate_name(c.name));
  auto value = body.find("value");
  if (value == body.end() || !value->is_string())
    co_return Error::invalid_argument("value is required and must be a string");
  c.value = SecretString(value->get<std::string>());
  value->get_ref<std::string&>().assign(value->get_ref<std::string&>().size(), '\0');  // wipe our copy
  AP_CO_ASSIGN_OR_RETURN(c.kind, required_string(body, "kind"));
  if (auto m = body.find("metadata"); m != body.end()) c.metadata = *m;
  if (auto h = body.find("allowed_hosts"); h != body.end()) {
    if (!h->is_array()) co_return Error::invalid_argument("allowed_hosts must be an array of host names");
    for (const auto& host : *h) {
      if (!host.is_string()) co_return Error::invalid_argument("allowed_hosts must be an array of host names");
      c.allowed_hosts.push_back(host.get<std::string>());
    }
  }
  for (auto it = body.begin(); it != body.end(); ++it)
    if (it.key() != "value" && it.key() != "kind" && it.key() != "metadata" && it.key() != "allowed_hosts")
      co_return Error::invalid_argument("unknown field '" + it.key() + "' (known: value, kind, metadata, allowed_hosts)");
  AP_CO_ASSIGN_OR_RETURN(auto info, co_await store->put(audit_context(ctx), std::move(c)));
  co_return Response::json(info.version == 1 ? 201 : 200, dump(info.to_json()));
}

Task list_credentials(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* store, store_of(ctx));
  AP_CO_ASSIGN_OR_RETURN(auto items, co_await store->list(audit_context(ctx)));
  json arr = json::array();
  for (const auto& i : items) arr.push_back(i.to_json());
  co_return Response::json(200, dump(json{{"items", arr}}));
}

Task get_credential(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* store, store_of(ctx));
  AP_CO_ASSIGN_OR_RETURN(auto info, co_await store->get(audit_context(ctx), std::string(ctx.param("name"))));
  co_return Response::json(200, dump(info.to_json()));
}

Task delete_credential(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* store, store_of(ctx));
  std::string name(ctx.param("name"));
  AP_CO_RETURN_IF_ERROR(co_await store->remove(audit_context(ctx), name));
  co_return Response::json(200, dump(json{{"name", name}, {"deleted", true}}));
}

}  // namespace

void add_credential_routes(Router& r) {
  r.add({"PUT", "/v1/credentials/{name}", AuthMode::kTenant, auth::kScopeCredentials, put_credential});
  r.add({"GET", "/v1/credentials", AuthMode::kTenant, auth::kScopeCredentials, list_credentials});
  r.add({"GET", "/v1/credentials/{name}", AuthMode::kTenant, auth::kScopeCredentials, get_credential});
  r.add({"DELETE", "/v1/credentials/{name}", AuthMode::kTenant, auth::kScopeCredentials, delete_credential});
}

}  // namespace ap::gateway
