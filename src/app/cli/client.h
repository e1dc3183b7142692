// Operator commands that talk to a running server's HTTP API: tenants and keys.
// Credentials come from the environment (AGENTPLANE_ADMIN_TOKEN, AGENTPLANE_API_KEY) or from a
// dev folder's dev.json. Blocks. Output is JSON on stdout; errors are one line on stderr.
#pragma once

#include <string>

#include "common/result.h"
#include <vector>

namespace ap::app::cli {

struct ClientConfig {
  std::string url;       // default: AGENTPLANE_URL, then dev.json, then http://127.0.0.1:8123
  std::string data_dir;  // where dev.json is looked for
};

// The server URL and the tenant API key a client command uses (as described above).
std::string api_url(const ClientConfig& c);
Result<std::string> api_credential(const ClientConfig& c);

// `agentplane run`: one run of `assistant` (an assistant id or a graph id) on a new thread or
// `thread`, with `message` as a human message; streamed (--stream) or waited for (cli/run.cc).
int run_agent(const ClientConfig& c, const std::string& assistant, std::string thread, const std::string& message,
              bool stream);

int tenant_create(const ClientConfig& c, const std::string& name);
int tenant_list(const ClientConfig& c);
// retain_days < 0: the server's default retention.
int tenant_delete(const ClientConfig& c, const std::string& tenant, int retain_days);
// With `tenant` set, uses the admin token on /v1/tenants/{tenant}/keys; otherwise the tenant's
// own API key on /v1/keys.
int key_create(const ClientConfig& c, const std::string& tenant, const std::string& name,
               const std::vector<std::string>& scopes);
int key_list(const ClientConfig& c, const std::string& tenant);
int key_revoke(const ClientConfig& c, const std::string& tenant, const std::string& key_id);
// Credentials (the tenant's API key). The value is read from standard input, never from the
// command line (which other users can see in the process list).
// `allowed_hosts`: where the value may be sent (tools may use it only with some listed).
int credential_put(const ClientConfig& c, const std::string& name, const std::string& kind,
                   const std::string& metadata_json, const std::vector<std::string>& allowed_hosts);
int credential_list(const ClientConfig& c);
int credential_delete(const ClientConfig& c, const std::string& name);

// `agentplane usage`: a tenant's model usage and cost (GET /v1/usage with the tenant's key;
// with `tenant`, the operator's GET /v1/tenants/{id}/usage), or with `all_tenants` every
// tenant's totals (admin token).
struct UsageOptions {
  std::string tenant, from, to, group_by = "model";
  bool all_tenants = false;
};
int usage(const ClientConfig& c, const UsageOptions& o);

}  // namespace ap::app::cli
