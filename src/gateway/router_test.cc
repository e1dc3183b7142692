#include "gateway/router.h"

#include <gtest/gtest.h>

#include "gateway/errors.h"
#include "gateway/server.h"

namespace ap::gateway {
namespace {

boost::asio::awaitable<Result<Response>> noop(RequestContext&) { co_return Response{}; }

TEST(Router, MatchesTemplatesAndParams) {
  Router r;
  r.add({"GET", "/v1/keys", AuthMode::kTenant, 0, noop});
  r.add({"GET", "/v1/keys/{key_id}", AuthMode::kTenant, 0, noop});
  r.add({"DELETE", "/v1/keys/{key_id}", AuthMode::kTenant, 0, noop});
  auto m = r.match("GET", "/v1/keys/abc");
  ASSERT_TRUE(m.route);
  EXPECT_EQ(m.route->pattern, "/v1/keys/{key_id}");
  ASSERT_EQ(m.params.size(), 1u);
  EXPECT_EQ(m.params[0].second, "abc");
  EXPECT_TRUE(r.match("GET", "/v1/keys/").route);  // trailing slash is the list
  EXPECT_FALSE(r.match("GET", "/v1/nope").route);
  EXPECT_FALSE(r.match("GET", "/v1/nope").method_mismatch);
  auto wrong = r.match("PUT", "/v1/keys/abc");
  EXPECT_FALSE(wrong.route);
  EXPECT_TRUE(wrong.method_mismatch);
  EXPECT_EQ(wrong.allow, "GET, DELETE");
}

TEST(Errors, OneMapFromCodesToStatuses) {
  EXPECT_EQ(http_status(Code::kInvalidArgument), 400);
  EXPECT_EQ(http_status(Code::kUnauthenticated), 401);
  EXPECT_EQ(http_status(Code::kPermissionDenied), 403);
  EXPECT_EQ(http_status(Code::kNotFound), 404);
  EXPECT_EQ(http_status(Code::kPayloadTooLarge), 413);
  EXPECT_EQ(http_status(Code::kResourceExhausted), 429);
  EXPECT_EQ(http_status(Code::kUnavailable), 503);
  auto r = error_response(Error::internal("password=hunter2 leaked"));
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.body, R"({"detail":"internal error"})");
}

TEST(ListenAddress, ParsesAndRejects) {
  auto a = parse_listen_address("127.0.0.1:8123");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->port, 8123);
  EXPECT_TRUE(parse_listen_address("[::1]:0"));
  EXPECT_EQ(parse_listen_address("localhost:80")->host, "127.0.0.1");
  EXPECT_FALSE(parse_listen_address("8123"));
  EXPECT_FALSE(parse_listen_address("127.0.0.1:99999"));
  EXPECT_FALSE(parse_listen_address("nohost.example:80"));
}

}  // namespace
}  // namespace ap::gateway
