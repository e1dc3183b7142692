#include "app/cli/client.h"

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "common/crypto.h"
#include "common/result.h"
#include "net/blocking_client.h"

namespace ap::app::cli {
namespace {
using nlohmann::json;

json dev_json(const ClientConfig& c) {
  std::ifstream in(c.data_dir + "/dev.json");
  if (!in) return json::object();
  json j = json::parse(in, nullptr, false);
  return j.is_object() ? j : json::object();
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string base_url(const ClientConfig& c) {
  if (!c.url.empty()) return c.url;
  if (auto e = env("AGENTPLANE_URL"); !e.empty()) return e;
  auto d = dev_json(c);
  return d.value("url", "http://127.0.0.1:8123");
}

Result<std::string> credential(const ClientConfig& c, bool admin) {
  const char* var = admin ? "AGENTPLANE_ADMIN_TOKEN" : "AGENTPLANE_API_KEY";
  if (auto e = env(var); !e.empty()) return e;
  auto d = dev_json(c);
  std::string v = d.value(admin ? "admin_token" : "demo_api_key", "");
  if (!v.empty()) return v;
  return Error::unauthenticated(std::string("set ") + var + " (or run `agentplane dev` first)");
}

}  // namespace

std::string api_url(const ClientConfig& c) { return base_url(c); }
Result<std::string> api_credential(const ClientConfig& c) { return credential(c, false); }

namespace {

int call(const ClientConfig& c, bool admin, const std::string& method, const std::string& target,
         const std::string& body = "") {
  auto cred = credential(c, admin);
  if (!cred) {
    std::cerr << "agentplane: " << cred.error().message << "\n";
    return 2;
  }
  auto r = net::http_request(base_url(c), method, target, {{"authorization", "Bearer " + *cred}},
                             body);
  if (!r) {
    std::cerr << "agentplane: " << r.error().message << "\n";
    return 1;
  }
  json j = json::parse(r->body, nullptr, false);
  if (r->status >= 300) {
    std::string detail = j.is_object() ? j.value("detail", r->body) : r->body;
    std::cerr << "agentplane: " << r->status << ": " << detail << "\n";
    return 1;
  }
  std::cout << (j.is_discarded() ? r->body : j.dump(2)) << "\n";
  return 0;
}

}  // namespace

int tenant_create(const ClientConfig& c, const std::string& name) {
  return call(c, true, "POST", "/v1/tenants", json{{"name", name}}.dump());
}

int tenant_list(const ClientConfig& c) { return call(c, true, "GET", "/v1/tenants?limit=1000"); }

int key_create(const ClientConfig& c, const std::string& tenant, const std::string& name,
               const std::vector<std::string>& scopes) {
  json body{{"name", name}};
  if (!scopes.empty()) body["scopes"] = scopes;
  if (!tenant.empty()) return call(c, true, "POST", "/v1/tenants/" + tenant + "/keys", body.dump());
  return call(c, false, "POST", "/v1/keys", body.dump());
}

int key_list(const ClientConfig& c, const std::string& tenant) {
  if (!tenant.empty()) return call(c, true, "GET", "/v1/tenants/" + tenant + "/keys?limit=1000");
  return call(c, false, "GET", "/v1/keys?limit=1000");
}

int credential_put(const ClientConfig& c, const std::string& name, const std::string& kind,
                   const std::string& metadata_json) {
  std::string value((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  while (!value.empty() && (value.back() == '\n' || value.back() == '\r')) value.pop_back();
  json metadata = metadata_json.empty() ? json::object() : json::parse(metadata_json, nullptr, false);
  if (metadata.is_discarded()) {
    std::cerr << "agentplane: --metadata must be a JSON object\n";
    return 2;
  }
  // Secret: the value goes only into the request body.
  std::string body = json{{"value", value}, {"kind", kind}, {"metadata", metadata}}.dump();
  wipe(value);
  int rc = call(c, false, "PUT", "/v1/credentials/" + name, body);
  wipe(body);
  return rc;
}

int credential_list(const ClientConfig& c) { return call(c, false, "GET", "/v1/credentials"); }

int credential_delete(const ClientConfig& c, const std::string& name) {
  return call(c, false, "DELETE", "/v1/credentials/" + name);
}

int tenant_delete(const ClientConfig& c, const std::string& tenant, int retain_days) {
  std::string path = "/v1/tenants/" + tenant;
  if (retain_days >= 0) path += "?retain_days=" + std::to_string(retain_days);
  return call(c, true, "DELETE", path);
}

int key_revoke(const ClientConfig& c, const std::string& tenant, const std::string& key_id) {
  if (!tenant.empty()) return call(c, true, "DELETE", "/v1/tenants/" + tenant + "/keys/" + key_id);
  return call(c, false, "DELETE", "/v1/keys/" + key_id);
}

}  // namespace ap::app::cli
