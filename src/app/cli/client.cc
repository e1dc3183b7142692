#include "app/cli/client.h"

#include <cctype>
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

// One API call: the JSON answer, or an error already printed (the exit code in `code`).
struct Answer {
  json body;
  int code = 0;
};
Answer fetch(const ClientConfig& c, bool admin, const std::string& method, const std::string& target,
             const std::string& body = "") {
  auto cred = credential(c, admin);
  if (!cred) {
    std::cerr << "agentplane: " << cred.error().message << "\n";
    return {nullptr, 2};
  }
  auto r = net::http_request(base_url(c), method, target, {{"authorization", "Bearer " + *cred}},
                             body);
  if (!r) {
    std::cerr << "agentplane: " << r.error().message << "\n";
    return {nullptr, 1};
  }
  json j = json::parse(r->body, nullptr, false);
  if (r->status >= 300) {
    std::string detail = j.is_object() ? j.value("detail", r->body) : r->body;
    std::cerr << "agentplane: " << r->status << ": " << detail << "\n";
    return {nullptr, 1};
  }
  return {j.is_discarded() ? json(r->body) : j, 0};
}

int call(const ClientConfig& c, bool admin, const std::string& method, const std::string& target,
         const std::string& body = "") {
  auto a = fetch(c, admin, method, target, body);
  if (a.code == 0) std::cout << (a.body.is_string() ? a.body.get<std::string>() : a.body.dump(2)) << "\n";
  return a.code;
}

std::string query_encode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char ch : s) {
    if (std::isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~' || ch == ':') {
      out += static_cast<char>(ch);
    } else {
      out += '%';
      out += hex[ch >> 4];
      out += hex[ch & 15];
    }
  }
  return out;
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
                   const std::string& metadata_json, const std::vector<std::string>& allowed_hosts) {
  std::string value((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  while (!value.empty() && (value.back() == '\n' || value.back() == '\r')) value.pop_back();
  json metadata = metadata_json.empty() ? json::object() : json::parse(metadata_json, nullptr, false);
  if (metadata.is_discarded()) {
    std::cerr << "agentplane: --metadata must be a JSON object\n";
    return 2;
  }
  // Secret: the value goes only into the request body.
  std::string body =
      json{{"value", value}, {"kind", kind}, {"metadata", metadata}, {"allowed_hosts", allowed_hosts}}.dump();
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

namespace ap::app::cli {

int usage(const ClientConfig& c, const UsageOptions& o) {
  std::string q = "?group_by=" + query_encode(o.group_by);
  if (!o.from.empty()) q += "&from=" + query_encode(o.from);
  if (!o.to.empty()) q += "&to=" + query_encode(o.to);
  if (!o.all_tenants) {
    if (!o.tenant.empty()) return call(c, true, "GET", "/v1/tenants/" + query_encode(o.tenant) + "/usage" + q);
    return call(c, false, "GET", "/v1/usage" + q);
  }
  // Every tenant's totals (for billing): one report per tenant, days in each tenant's zone.
  auto tenants = fetch(c, true, "GET", "/v1/tenants?limit=1000");
  if (tenants.code) return tenants.code;
  json rows = json::array();
  json total = json::object();
  for (const auto& t : tenants.body.value("items", json::array())) {
    const std::string id = t.value("tenant_id", "");
    auto u = fetch(c, true, "GET", "/v1/tenants/" + id + "/usage" + q);
    if (u.code) return u.code;
    json row = u.body["total"];
    row["tenant_id"] = id;
    row["name"] = t.value("name", "");
    row["from"] = u.body["from"];
    row["to"] = u.body["to"];
    for (const auto& [k, v] : u.body["total"].items())
      if (v.is_number_integer()) total[k] = total.value(k, int64_t{0}) + v.get<int64_t>();
    rows.push_back(std::move(row));
  }
  std::cout << json{{"group_by", "tenant"}, {"rows", rows}, {"total", total}}.dump(2) << "\n";
  return 0;
}

}  // namespace ap::app::cli
