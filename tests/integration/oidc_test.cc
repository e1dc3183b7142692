// OIDC sign-in against a real OpenID provider (tests/oidc: npm oidc-provider on 127.0.0.1,
// issuing JWT access tokens): a valid token signs in to its tenant; tokens for unknown tenants,
// for another audience, from an unconfigured issuer, and crafted ones (alg none, RS256->HS256
// confusion, unknown kid, tampered payload) get 401 and are audited as failed sign-ins.
// Expiry, nbf and the other claim checks are unit-tested in src/auth/jwt_test.cc.
#include <gtest/gtest.h>
#include <poll.h>
#include <openssl/hmac.h>
#include <signal.h>
#include <spawn.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "common/crypto.h"
#include "store/sync_conn.h"
#include "tests/integration/fixture.h"

extern char** environ;

namespace ap::testing {
namespace {

// The provider from tests/oidc, started with `node provider.mjs`; stopped on destruction.
class Provider {
 public:
  explicit Provider(std::vector<std::string> env = {}) {
    // Node 20 can deadlock in generateKeyPairSync when a GC runs at the wrong moment (a mutex
    // taken twice in KeyGenJob's destructor): a provider that says nothing in 20 s is started
    // again.
    for (int attempt = 0; attempt < 3; ++attempt)
      if (start(env)) return;
    throw std::runtime_error("the provider did not start (3 attempts)");
  }
  bool start(const std::vector<std::string>& env) {
    const char* data = std::getenv("AP_TESTDATA");
    std::string dir = std::string(data ? data : "tests/testdata") + "/../oidc";
    if (!std::filesystem::exists(dir + "/node_modules"))
      throw std::runtime_error("run `npm ci` in tests/oidc (scripts/install-deps.sh --with-node does)");
    int fds[2];
    if (pipe(fds) != 0) throw std::runtime_error("pipe");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    std::string script = dir + "/provider.mjs", node = "node";
    std::vector<char*> argv{node.data(), script.data(), nullptr};
    std::vector<std::string> envs;
    for (char** e = environ; *e; ++e) envs.emplace_back(*e);
    for (auto& e : env) envs.push_back(e);
    std::vector<char*> envp;
    for (auto& e : envs) envp.push_back(e.data());
    envp.push_back(nullptr);
    if (posix_spawnp(&pid_, "node", &fa, nullptr, argv.data(), envp.data()) != 0) throw std::runtime_error("spawn node");
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    std::string line;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    bool whole = false;
    while (!whole && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fds[0], POLLIN, 0};
      if (poll(&p, 1, 200) <= 0) continue;
      char c;
      if (read(fds[0], &c, 1) != 1) break;
      if (c == '\n') whole = true;
      else line += c;
    }
    close(fds[0]);
    if (!whole) {  // hung (or died): gone, and again
      kill(pid_, SIGKILL);
      int st;
      waitpid(pid_, &st, 0);
      return false;
    }
    info_ = json::parse(line, nullptr, false);
    if (!info_.is_object()) throw std::runtime_error("the provider did not start: " + line);
    return true;
  }
  ~Provider() {
    kill(pid_, SIGTERM);
    int st;
    waitpid(pid_, &st, 0);
  }
  std::string issuer() const { return info_["issuer"]; }
  // A client-credentials access token (a JWT) for `tenant`, for audience `resource`.
  std::string token(const std::string& tenant, const std::string& resource = "urn:agentplane:test") const {
    std::string endpoint = info_["token_endpoint"];
    auto slash = endpoint.find('/', endpoint.find("://") + 3);
    auto r = net::http_request(endpoint.substr(0, slash), "POST", endpoint.substr(slash),
                               {{"content-type", "application/x-www-form-urlencoded"}},
                               "grant_type=client_credentials&client_id=agentplane-test&client_secret=test-secret"
                               "&resource=" + resource + "&tenant_id=" + tenant);
    EXPECT_TRUE(r && r->status == 200) << (r ? r->body : r.error().message);
    auto j = json::parse(r ? r->body : "{}", nullptr, false);
    return j.value("access_token", "");
  }
  std::string jwks() const {
    std::string uri = info_["jwks_uri"];
    auto slash = uri.find('/', uri.find("://") + 3);
    auto r = net::http_request(uri.substr(0, slash), "GET", uri.substr(slash));
    return r ? r->body : "";
  }

 private:
  pid_t pid_ = -1;
  json info_;
};

std::string b64(std::string_view s) {
  std::string out = base64url_encode(s);
  while (!out.empty() && out.back() == '=') out.pop_back();
  return out;
}
json part(const std::string& token, int i) {
  size_t a = 0;
  for (int k = 0; k < i; ++k) a = token.find('.', a) + 1;
  std::string seg = token.substr(a, token.find('.', a) - a);
  while (seg.size() % 4) seg += '=';
  return json::parse(*base64url_decode(seg));
}

TEST(Oidc, RealProviderTokensSignInAndAttacksAreRefused) {
  Provider idp, other;
  TestServer server(2, std::chrono::seconds(30), {{idp.issuer(), {"urn:agentplane:test"}, {"RS256", "ES256"}, "tenant_id"}});
  auto tenant = server.make_tenant("oidc");
  auto platform_failures = [&] {
    auto su = store::SyncConn::connect(Database::get().superuser_url());
    auto r = (*su)->exec("SELECT count(*) FROM agentplane.audit_events WHERE tenant_id = "
                         "'00000000-0000-0000-0000-000000000000' AND kind = 'auth.failure'");
    return r ? std::stoll(std::string(r->get(0, 0))) : -1;
  };
  const int64_t failures_before = platform_failures();

  std::string good = idp.token(tenant.id);
  ASSERT_FALSE(good.empty());
  auto ok = server.call("PUT", "/v1/credentials/from-sso", good, json{{"value", "sso-secret-1a2b"}, {"kind", "secret"}}.dump());
  register_secret("sso-secret-1a2b");
  register_secret(good);
  ASSERT_EQ(ok.status, 201) << ok.body;
  EXPECT_EQ(json::parse(ok.body)["created_by"], "user:" + idp.issuer() + "#agentplane-test");
  EXPECT_EQ(server.call_json("GET", "/v1/credentials", tenant.key)["items"].size(), 1u);  // the same tenant

  int refused = 0;
  auto expect_401 = [&](const std::string& token, const std::string& what) {
    auto r = server.call("GET", "/v1/credentials", token);
    EXPECT_EQ(r.status, 401) << what << ": " << r.body;
    ++refused;
  };
  expect_401(idp.token(Uuid::random_v4().to_string()), "a tenant that does not exist");
  expect_401(idp.token("acme"), "a tenant claim that is not a tenant id");
  expect_401(idp.token(tenant.id, "urn:agentplane:other"), "another audience");
  expect_401(other.token(tenant.id), "an issuer that is not configured");

  json header = part(good, 0), payload = part(good, 1);
  std::string signature = good.substr(good.rfind('.') + 1);
  // alg none.
  expect_401(b64(json{{"alg", "none"}, {"typ", "at+jwt"}}.dump()) + "." + b64(payload.dump()) + ".", "alg none");
  // RS256 -> HS256 with the published key set as the HMAC secret.
  std::string jwks = idp.jwks(), input = b64(json{{"alg", "HS256"}, {"kid", header["kid"]}}.dump()) + "." + b64(payload.dump());
  unsigned char mac[32];
  unsigned int n = 0;
  HMAC(EVP_sha256(), jwks.data(), static_cast<int>(jwks.size()), reinterpret_cast<const unsigned char*>(input.data()),
       input.size(), mac, &n);
  expect_401(input + "." + b64(std::string(reinterpret_cast<char*>(mac), n)), "RS256 -> HS256 confusion");
  // A kid the provider never published.
  json unknown = header;
  unknown["kid"] = "../../keys/other";
  expect_401(b64(unknown.dump()) + "." + b64(payload.dump()) + "." + signature, "unknown kid");
  // The payload changed to another tenant, signature kept.
  auto victim = server.make_tenant("victim");
  json moved = payload;
  moved["tenant_id"] = victim.id;
  expect_401(b64(header.dump()) + "." + b64(moved.dump()) + "." + signature, "tampered payload");

  ASSERT_TRUE(eventually([&] { return platform_failures() >= failures_before + refused; }))
      << "every refused sign-in is audited";
}

// A self-signed certificate for "localhost" (its own CA) in `dir`; returns {cert, key}.
std::pair<std::string, std::string> make_certificate(const std::string& dir, const std::string& name) {
  std::string cert = dir + "/" + name + ".crt", key = dir + "/" + name + ".key";
  std::string cmd = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost "
                    "-addext subjectAltName=DNS:localhost -keyout " + key + " -out " + cert + " >/dev/null 2>&1";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << "openssl req failed";
  return {cert, key};
}

// An HTTPS issuer: its certificate is verified (here trusted through SSL_CERT_FILE, as a
// private CA would be); a provider whose certificate nobody trusts cannot sign anyone in.
TEST(Oidc, HttpsIssuersAreVerified) {
  auto dir = Database::get().temp_dir();
  auto [cert, key] = make_certificate(dir, "idp");
  auto [rogue_cert, rogue_key] = make_certificate(dir, "rogue");
  setenv("SSL_CERT_FILE", cert.c_str(), 1);
  Provider idp({"OIDC_TLS_CERT=" + cert, "OIDC_TLS_KEY=" + key});
  Provider rogue({"OIDC_TLS_CERT=" + rogue_cert, "OIDC_TLS_KEY=" + rogue_key});
  ASSERT_EQ(idp.issuer().rfind("https://localhost:", 0), 0u) << idp.issuer();
  TestServer server(2, std::chrono::seconds(30),
                    {{idp.issuer(), {"urn:agentplane:test"}, {"RS256", "ES256"}, "tenant_id"},
                     {rogue.issuer(), {"urn:agentplane:test"}, {"RS256", "ES256"}, "tenant_id"}});
  auto tenant = server.make_tenant("oidc-tls");
  // Tokens are fetched from the test over plain curl-less HTTPS: the test's own client verifies too.
  std::string good = idp.token(tenant.id);
  ASSERT_FALSE(good.empty());
  register_secret(good);
  EXPECT_EQ(server.call("GET", "/v1/credentials", good).status, 200);
  setenv("SSL_CERT_FILE", rogue_cert.c_str(), 1);  // only for fetching the rogue's token
  std::string rogue_token = rogue.token(tenant.id);
  setenv("SSL_CERT_FILE", cert.c_str(), 1);
  ASSERT_FALSE(rogue_token.empty());
  register_secret(rogue_token);
  auto refused = server.call("GET", "/v1/credentials", rogue_token);
  EXPECT_EQ(refused.status, 401) << refused.body;
  unsetenv("SSL_CERT_FILE");
}

}  // namespace
}  // namespace ap::testing
