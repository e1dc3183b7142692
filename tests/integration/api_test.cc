// The HTTP API end to end: a real server on 127.0.0.1:0 against the test's PostgreSQL.
#include <gtest/gtest.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <regex>
#include <thread>

#include "auth/authenticator.h"
#include "gateway/server.h"
#include "tests/integration/fixture.h"

namespace ap::testing {
namespace {

class Api : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server = new TestServer(2, std::chrono::seconds(1)); }
  static void TearDownTestSuite() {
    delete server;
    server = nullptr;
  }
  static TestServer* server;
};
TestServer* Api::server = nullptr;

TEST_F(Api, HealthInfoAndRequestIds) {
  auto ok = server->call("GET", "/ok");
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body, R"({"ok":true})");
  EXPECT_EQ(ok.header("x-request-id").size(), 32u);
  auto echoed = server->call("GET", "/ok", "", "", {{"x-request-id", "abc-123"}});
  EXPECT_EQ(echoed.header("x-request-id"), "abc-123");
  auto bad_id = server->call("GET", "/ok", "", "", {{"x-request-id", "has space"}});
  EXPECT_NE(bad_id.header("x-request-id"), "has space");
  auto info = server->call_json("GET", "/info", "");
  EXPECT_EQ(info["name"], "agentplane");
  EXPECT_TRUE(info["features"].is_array());
}

TEST_F(Api, ErrorsAreJsonWithTheRightStatus) {
  auto t = server->make_tenant("errors");
  auto r = server->call("GET", "/v1/nothing-here", t.key);
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(json::parse(r.body)["detail"], "no route for GET /v1/nothing-here");
  r = server->call("PUT", "/v1/keys", t.key);
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.header("allow"), "POST, GET");
  r = server->call("POST", "/v1/keys", t.key, "{not json");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(json::parse(r.body)["detail"], "malformed JSON body");
  r = server->call("POST", "/v1/keys", t.key, "[1,2]");
  EXPECT_EQ(r.status, 400);
  r = server->call("POST", "/v1/keys", t.key, R"({"name": 7})");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(json::parse(r.body)["detail"], "'name' must be a string");
  r = server->call("GET", "/v1/keys?limit=0", t.key);
  EXPECT_EQ(r.status, 400);
  r = server->call("GET", "/v1/keys");
  EXPECT_EQ(r.status, 401);
  EXPECT_TRUE(json::parse(r.body).contains("detail"));
  r = server->call("GET", "/v1/keys", "ap_" + std::string(43, 'A'));
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(json::parse(r.body)["detail"], "invalid API key");
  r = server->call("GET", "/v1/keys", "sk-something");
  EXPECT_EQ(r.status, 401);
  r = server->call("GET", "/v1/keys", "a.b.c");
  EXPECT_EQ(r.status, 401);
}

TEST_F(Api, BodyAndHeaderCaps) {
  auto t = server->make_tenant("caps");
  // Declared too large: refused from the headers (body limit is 64 KiB in this fixture).
  auto big = server->call("POST", "/v1/keys", t.key, std::string(70 * 1024, 'x'));
  EXPECT_EQ(big.status, 413);
  EXPECT_TRUE(json::parse(big.body).contains("detail"));
  auto huge_header = server->call("GET", "/ok", "", "", {{"x-filler", std::string(20000, 'a')}});
  EXPECT_EQ(huge_header.status, 431);
  EXPECT_TRUE(json::parse(huge_header.body).contains("detail"));
  // Every answer carries a Date (RFC 9110), these last ones too.
  const std::regex date("[A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT");
  for (const auto& r : {big, huge_header, server->call("GET", "/ok")})
    EXPECT_TRUE(std::regex_match(r.header("date"), date)) << r.header("date");
  auto keys = server->call_json("GET", "/v1/keys", t.key);
  EXPECT_EQ(keys["items"].size(), 1u);  // bad input changed nothing
}

// Requests however they arrive: two in one packet, a body after its header, a body sent only
// after 100 Continue, a chunked body. (The server parses what it has at once and reads only for
// what is missing.)
TEST_F(Api, RequestsAreReadWhateverTheirPacketsLike) {
  auto t = server->make_tenant("packets");
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::socket s(ioc);
  s.connect({boost::asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(server->server().port())});
  auto send = [&](const std::string& bytes) { boost::asio::write(s, boost::asio::buffer(bytes)); };
  std::string in;
  // Reads until `n` responses (each with a Content-Length body) are in; returns their bodies.
  auto responses = [&](size_t n) {
    std::vector<std::string> out;
    while (out.size() < n) {
      size_t head_end, cl;
      while ((head_end = in.find("\r\n\r\n")) == std::string::npos || (cl = in.find("Content-Length: ")) == std::string::npos ||
             in.size() < head_end + 4 + std::stoul(in.substr(cl + 16))) {
        char buf[4096];
        in.append(buf, s.read_some(boost::asio::buffer(buf)));
      }
      const size_t len = std::stoul(in.substr(cl + 16));
      EXPECT_EQ(in.substr(0, 10), "HTTP/1.1 2") << in.substr(0, head_end);
      out.push_back(in.substr(head_end + 4, len));
      in.erase(0, head_end + 4 + len);
    }
    return out;
  };
  const std::string auth = "x-api-key: " + t.key + "\r\n";
  auto post = [&](const std::string& name) {
    const std::string body = R"({"name":")" + name + R"("})";
    return "POST /v1/keys HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Type: application/json\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n\r\n" + body;
  };
  // Two requests in one write: the second is parsed from what the first read left over.
  send(post("one") + "GET /v1/keys HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n");
  auto two = responses(2);
  EXPECT_EQ(json::parse(two[0])["name"], "one");
  EXPECT_EQ(json::parse(two[1])["items"].size(), 2u);
  // The header, then its body a moment later.
  const std::string p = post("two");
  const size_t split = p.find("\r\n\r\n") + 4;
  send(p.substr(0, split));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  send(p.substr(split));
  EXPECT_EQ(json::parse(responses(1)[0])["name"], "two");
  // Expect: 100-continue: the body goes only after the interim answer.
  const std::string body = R"({"name":"three"})";
  send("POST /v1/keys HTTP/1.1\r\nHost: x\r\n" + auth + "Expect: 100-continue\r\nContent-Length: " + std::to_string(body.size()) +
       "\r\n\r\n");
  while (in.find("\r\n\r\n") == std::string::npos) {
    char buf[512];
    in.append(buf, s.read_some(boost::asio::buffer(buf)));
  }
  EXPECT_EQ(in.substr(0, 12), "HTTP/1.1 100");
  in.erase(0, in.find("\r\n\r\n") + 4);
  send(body);
  EXPECT_EQ(json::parse(responses(1)[0])["name"], "three");
  // A chunked body in two writes.
  send("POST /v1/keys HTTP/1.1\r\nHost: x\r\n" + auth + "Transfer-Encoding: chunked\r\n\r\n6\r\n{\"name\r\n");
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  send("9\r\n\":\"four\"}\r\n0\r\n\r\n");
  EXPECT_EQ(json::parse(responses(1)[0])["name"], "four");
  EXPECT_EQ(server->call_json("GET", "/v1/keys", t.key)["items"].size(), 5u);
}

TEST_F(Api, AdminEndpointsNeedTheAdminToken) {
  auto t = server->make_tenant("tenant-for-admin");
  EXPECT_EQ(server->call("GET", "/v1/tenants", t.key).status, 403);
  EXPECT_EQ(server->call("POST", "/v1/tenants", t.key, R"({"name":"x"})").status, 403);
  EXPECT_EQ(server->call("GET", "/v1/tenants").status, 401);
  EXPECT_EQ(server->call("GET", "/v1/tenants", "apadm_" + std::string(43, 'x')).status, 401);
  // The admin is not a tenant: tenant endpoints want a tenant key.
  EXPECT_EQ(server->call("GET", "/v1/keys", server->admin_token()).status, 403);
  auto created = server->call_json("POST", "/v1/tenants", server->admin_token(),
                                   R"({"name":"acme"})", 201);
  EXPECT_EQ(created["name"], "acme");
  auto got = server->call_json("GET", "/v1/tenants/" + created["tenant_id"].get<std::string>(),
                               server->admin_token());
  EXPECT_EQ(got, created);
  EXPECT_EQ(server->call("GET", "/v1/tenants/" + Uuid::random_v4().to_string(),
                         server->admin_token()).status, 404);
  EXPECT_EQ(server->call("GET", "/v1/tenants/not-a-uuid", server->admin_token()).status, 404);
  EXPECT_EQ(server->call("POST", "/v1/tenants", server->admin_token(), R"({"name":""})").status, 400);
  EXPECT_EQ(server->call("POST", "/v1/tenants/" + Uuid::random_v4().to_string() + "/keys",
                         server->admin_token(), R"({"name":"k"})").status, 404);
  auto list = server->call_json("GET", "/v1/tenants?limit=1000", server->admin_token());
  bool found = false;
  for (const auto& i : list["items"]) found = found || i["tenant_id"] == created["tenant_id"];
  EXPECT_TRUE(found);
}

TEST_F(Api, KeysLifecycleAndScopes) {
  auto t = server->make_tenant("keys");
  auto k = server->call_json("POST", "/v1/keys", t.key,
                             R"({"name":"reader","scopes":["read","keys"]})", 201);
  std::string reader = k["key"];
  EXPECT_EQ(k["scopes"], json::array({"keys", "read"}));
  EXPECT_EQ(k["prefix"], reader.substr(0, 11));
  EXPECT_EQ(k["created_by"], "key:" + t.key_id);
  // A key can only create keys with a subset of its own scopes.
  EXPECT_EQ(server->call("POST", "/v1/keys", reader, R"({"name":"x","scopes":["models"]})").status, 403);
  EXPECT_EQ(server->call("POST", "/v1/keys", reader, R"({"name":"x","scopes":["read"]})").status, 201);
  EXPECT_EQ(server->call("POST", "/v1/keys", t.key, R"({"name":"x","scopes":["root"]})").status, 400);
  EXPECT_EQ(server->call("POST", "/v1/keys", t.key, R"({"name":"x","scopes":[]})").status, 400);
  auto models_only = server->call_json("POST", "/v1/keys", t.key,
                                       R"({"name":"m","scopes":["models"]})", 201);
  auto denied = server->call("GET", "/v1/keys", models_only["key"]);
  EXPECT_EQ(denied.status, 403);
  EXPECT_EQ(json::parse(denied.body)["detail"], "this key lacks the 'keys' scope");
  // The key is never returned again.
  auto got = server->call_json("GET", "/v1/keys/" + k["key_id"].get<std::string>(), t.key);
  EXPECT_FALSE(got.contains("key"));
  EXPECT_EQ(got["name"], "reader");
  auto list = server->call_json("GET", "/v1/keys?limit=2", t.key);
  EXPECT_EQ(list["items"].size(), 2u);
  auto rest = server->call_json("GET", "/v1/keys?after=" + list["next_after"].get<std::string>(), t.key);
  EXPECT_EQ(rest["items"].size(), 2u);  // 4 keys: the first, reader, its read key, models
  for (const auto& i : rest["items"]) EXPECT_FALSE(i.contains("key"));
}

TEST_F(Api, XApiKeyWinsOverAuthorization) {
  auto t = server->make_tenant("header-order");
  auto r = server->call("GET", "/v1/keys", "ap_" + std::string(43, 'Z'), "", {{"x-api-key", t.key}});
  EXPECT_EQ(r.status, 200);
  r = server->call("GET", "/v1/keys", t.key, "", {{"x-api-key", "ap_" + std::string(43, 'Z')}});
  EXPECT_EQ(r.status, 401);
}

TEST_F(Api, RevokedKeyIsRefusedByTheVeryNextRequest) {
  auto t = server->make_tenant("revoke");
  auto k = server->call_json("POST", "/v1/keys", t.key, R"({"name":"temp"})", 201);
  std::string temp = k["key"];
  EXPECT_EQ(server->call("GET", "/v1/keys", temp).status, 200);  // now cached
  auto revoked = server->call_json("DELETE", "/v1/keys/" + k["key_id"].get<std::string>(), t.key);
  EXPECT_FALSE(revoked["revoked_at"].is_null());
  auto r = server->call("GET", "/v1/keys", temp);
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(json::parse(r.body)["detail"], "API key has been revoked");
  // Revoking again keeps the first time.
  auto again = server->call_json("DELETE", "/v1/keys/" + k["key_id"].get<std::string>(), t.key);
  EXPECT_EQ(again["revoked_at"], revoked["revoked_at"]);
}

// Pushed by NOTIFY (milliseconds), not left to the key cache's expiry; the bound leaves room for
// a busy machine.
TEST_F(Api, RevocationReachesOtherReplicasAtOnce) {
  TestServer other(1);
  auto t = server->make_tenant("replicas");
  auto k = server->call_json("POST", "/v1/keys", t.key, R"({"name":"shared"})", 201);
  std::string shared = k["key"];
  ASSERT_EQ(other.call("GET", "/v1/keys", shared).status, 200);  // cached on the other replica
  ASSERT_EQ(server->call("DELETE", "/v1/keys/" + k["key_id"].get<std::string>(), t.key).status, 200);
  EXPECT_TRUE(eventually([&] { return other.call("GET", "/v1/keys", shared).status == 401; },
                         std::chrono::seconds(3)));
}

TEST_F(Api, LastUsedIsWrittenInBatches) {
  auto t = server->make_tenant("touch");
  EXPECT_EQ(server->call("GET", "/v1/keys", t.key).status, 200);
  EXPECT_TRUE(eventually(
      [&] {
        auto k = server->call_json("GET", "/v1/keys/" + t.key_id, t.key);
        return !k["last_used_at"].is_null();
      },
      std::chrono::seconds(5)));
}

// Every endpoint, two tenants: B gets 404 on A's ids, and lists show only its own.
TEST_F(Api, TwoTenantsNeverSeeEachOther) {
  auto a = server->make_tenant("tenant-a");
  auto b = server->make_tenant("tenant-b");
  auto a_key = server->call_json("POST", "/v1/keys", a.key, R"({"name":"a2"})", 201);
  std::string a_key_id = a_key["key_id"];
  EXPECT_EQ(server->call("GET", "/v1/keys/" + a_key_id, b.key).status, 404);
  EXPECT_EQ(server->call("DELETE", "/v1/keys/" + a_key_id, b.key).status, 404);
  EXPECT_EQ(server->call("GET", "/v1/keys/" + a_key_id, a.key).status, 200);  // untouched
  EXPECT_TRUE(server->call_json("GET", "/v1/keys/" + a_key_id, a.key)["revoked_at"].is_null());
  // The admin's per-tenant routes name the tenant: A's key under B is not found either.
  EXPECT_EQ(server->call("DELETE", "/v1/tenants/" + b.id + "/keys/" + a_key_id,
                         server->admin_token()).status, 404);
  for (const auto& [who, other] : {std::pair{a, b}, std::pair{b, a}}) {
    auto list = server->call_json("GET", "/v1/keys?limit=1000", who.key);
    for (const auto& i : list["items"]) EXPECT_EQ(i["tenant_id"], who.id);
    auto admin_list = server->call_json("GET", "/v1/tenants/" + who.id + "/keys?limit=1000",
                                        server->admin_token());
    for (const auto& i : admin_list["items"]) EXPECT_EQ(i["tenant_id"], who.id);
  }
}

TEST_F(Api, MetricsInPrometheusFormat) {
  server->call("GET", "/ok");
  auto m = server->call("GET", "/metrics");
  EXPECT_EQ(m.status, 200);
  EXPECT_NE(m.header("content-type").find("text/plain"), std::string::npos);
  EXPECT_NE(m.body.find("agentplane_http_requests_total{route=\"/ok\",method=\"GET\",status=\"200\"}"),
            std::string::npos);
  EXPECT_NE(m.body.find("agentplane_http_request_duration_seconds_bucket{route=\"/v1/keys\""),
            std::string::npos);
  auto t = server->make_tenant("metrics");
  server->call("GET", "/v1/keys", t.key);
  m = server->call("GET", "/metrics");
  EXPECT_EQ(m.body.find(t.key), std::string::npos);  // Secret: never in metrics
  EXPECT_EQ(m.body.find(t.id), std::string::npos);   // no unbounded tenant label either
}

TEST(Server, PortInUseIsAClearError) {
  TestServer first(1);
  app::ServeConfig c;
  c.database_url = Database::get().app_url();
  c.server.listen = "127.0.0.1:" + std::to_string(first.server().port());
  std::unique_ptr<app::Wiring> w;
  auto s = app::start_server(c, w);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Code::kUnavailable);
  EXPECT_NE(s.error().message.find("in use"), std::string::npos) << s.error().message;
}

TEST(Server, GracefulShutdownFinishesInFlightRequests) {
  // A server with one slow route: the request is in flight when stop() begins.
  std::atomic<bool> entered{false};
  auto router = std::make_shared<gateway::Router>();
  router->add({"GET", "/slow", gateway::AuthMode::kNone, 0,
               [&](gateway::RequestContext&) -> boost::asio::awaitable<Result<gateway::Response>> {
                 entered = true;
                 boost::asio::steady_timer t(co_await boost::asio::this_coro::executor,
                                             std::chrono::milliseconds(300));
                 co_await t.async_wait(boost::asio::use_awaitable);
                 co_return gateway::Response::json(200, R"({"slow":true})");
               }});
  auth::Authenticator authn(Clock::system(), {});
  gateway::ServerOptions o;
  o.listen = "127.0.0.1:0";
  o.threads = 1;
  o.pool.conninfo = Database::get().app_url();
  gateway::Server srv(o, router, authn, {"test", {}});
  ASSERT_TRUE(srv.start());
  std::string url = "http://127.0.0.1:" + std::to_string(srv.port());
  Result<net::HttpResponse> slow = Error::internal("not run");
  std::thread client([&] { slow = net::http_request(url, "GET", "/slow"); });
  ASSERT_TRUE(eventually([&] { return entered.load(); }));
  srv.stop();
  client.join();
  ASSERT_TRUE(slow) << slow.error().message;
  EXPECT_EQ(slow->status, 200);
  EXPECT_EQ(slow->body, R"({"slow":true})");
  EXPECT_FALSE(net::http_request(url, "GET", "/slow", {}, "", std::chrono::seconds(2)));
}

}  // namespace
}  // namespace ap::testing
