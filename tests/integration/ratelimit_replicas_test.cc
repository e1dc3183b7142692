// Limits shared by several server replicas through one real Redis (started here): a limit of N
// per minute across replicas lets exactly N through, whichever replica each request reaches.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "tests/integration/fixture.h"

namespace ap::testing {
namespace {

TEST(RateLimitReplicas, OneLimitAcrossReplicasIsExact) {
  RedisServer redis;
  ASSERT_TRUE(redis.up()) << "redis-server is required (scripts/install-deps.sh installs it)";
  TestServer s1(2, std::chrono::seconds(30), {}, "api", redis.url());
  TestServer s2(2, std::chrono::seconds(30), {}, "api", redis.url());
  auto t = s1.make_tenant("limited");
  s1.call_json("PUT", "/v1/model-routes/s", t.key, R"({"provider": "scripted", "script": ["ok"]})", 201);
  // 20 per minute refills one request every 3 s: the burst below takes well under that.
  s1.call_json("PUT", "/v1/tenants/" + t.id + "/limits", s1.admin_token(), R"({"model_requests_per_min": 20})");
  const std::string body = R"({"model": "s", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})";
  std::atomic<int> ok{0}, limited{0}, other{0};
  std::vector<std::thread> threads;
  for (int th = 0; th < 6; ++th) {
    threads.emplace_back([&, th] {
      TestServer& s = th % 2 ? s2 : s1;
      for (int i = 0; i < 10; ++i) {
        auto r = s.call("POST", "/v1/chat/completions", t.key, body);
        if (r.status == 200) ++ok;
        else if (r.status == 429 && !r.header("retry-after").empty()) ++limited;
        else ++other;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), 20);
  EXPECT_EQ(limited.load(), 40);
  EXPECT_EQ(other.load(), 0);
  // Both replicas report the same remaining count.
  auto l1 = s1.call_json("GET", "/v1/limits", t.key);
  auto l2 = s2.call_json("GET", "/v1/limits", t.key);
  EXPECT_EQ(l1["backend"], "redis");
  EXPECT_EQ(l1["usage"]["model_requests_per_min"]["remaining"], l2["usage"]["model_requests_per_min"]["remaining"]);
}

TEST(RateLimitReplicas, RedisDownFailsClosedWithAClearErrorNotACrash) {
  auto redis = std::make_unique<RedisServer>();
  ASSERT_TRUE(redis->up());
  TestServer s(2, std::chrono::seconds(30), {}, "api", redis->url());
  auto t = s.make_tenant("closed");
  s.call_json("PUT", "/v1/model-routes/s", t.key, R"({"provider": "scripted", "script": ["ok"]})", 201);
  s.call_json("PUT", "/v1/tenants/" + t.id + "/limits", s.admin_token(), R"({"model_requests_per_min": 100})");
  const std::string body = R"({"model": "s", "messages": [{"role": "user", "content": "hi"}]})";
  EXPECT_EQ(s.call("POST", "/v1/chat/completions", t.key, body).status, 200);
  redis.reset();  // Redis dies
  auto r = s.call("POST", "/v1/chat/completions", t.key, body);
  EXPECT_EQ(r.status, 429);  // this server is configured fail-closed
  EXPECT_NE(r.body.find("unreachable"), std::string::npos) << r.body;
  EXPECT_EQ(s.call("GET", "/ok").status, 200);  // and it still serves
}

}  // namespace
}  // namespace ap::testing
