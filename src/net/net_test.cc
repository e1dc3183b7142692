#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <thread>

#include "net/egress.h"
#include "net/http_client.h"

namespace ap::net {
namespace {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

TEST(Url, Parses) {
  auto u = Url::parse("https://API.example.com/v1");
  ASSERT_TRUE(u);
  EXPECT_TRUE(u->tls);
  EXPECT_EQ(u->host, "api.example.com");
  EXPECT_EQ(u->port, "443");
  EXPECT_EQ(u->target, "/v1");
  EXPECT_EQ(u->host_header(), "api.example.com");
  auto v = Url::parse("http://[::1]:8080?a=1");
  ASSERT_TRUE(v);
  EXPECT_EQ(v->host, "::1");
  EXPECT_EQ(v->target, "/?a=1");
  EXPECT_EQ(v->host_header(), "[::1]:8080");
  EXPECT_FALSE(Url::parse("ftp://x"));
  EXPECT_FALSE(Url::parse("http://user:pw@host/"));
  EXPECT_FALSE(Url::parse("http://host:99999/"));
  EXPECT_FALSE(Url::parse("http://host/a b"));
}

TEST(Egress, RefusesInternalUnlessListed) {
  auto e = Egress::parse({});
  ASSERT_TRUE(e);
  for (const char* a : {"127.0.0.1", "10.1.2.3", "172.20.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
                        "::1", "fe80::1", "fd00::1", "::ffff:127.0.0.1", "224.0.0.1"})
    EXPECT_FALSE(e->check("h", asio::ip::make_address(a))) << a;
  EXPECT_TRUE(e->check("h", asio::ip::make_address("8.8.8.8")));
  EXPECT_TRUE(e->check("h", asio::ip::make_address("2606:4700::1111")));

  auto listed = Egress::parse({"127.0.0.1", "10.0.0.0/8", "*.corp.example"}, /*public_allowed=*/false);
  ASSERT_TRUE(listed);
  EXPECT_TRUE(listed->check("x", asio::ip::make_address("127.0.0.1")));
  EXPECT_TRUE(listed->check("x", asio::ip::make_address("::ffff:127.0.0.1")));
  EXPECT_FALSE(listed->check("x", asio::ip::make_address("127.0.0.2")));
  EXPECT_TRUE(listed->check("x", asio::ip::make_address("10.9.9.9")));
  EXPECT_FALSE(listed->check("x", asio::ip::make_address("8.8.8.8")));          // public, not listed
  EXPECT_TRUE(listed->check("a.corp.example", asio::ip::make_address("8.8.8.8")));
  EXPECT_FALSE(listed->check("a.corp.example", asio::ip::make_address("192.168.0.1")));  // a name opens no network
  EXPECT_FALSE(listed->check("corp.example", asio::ip::make_address("8.8.8.8")));

  EXPECT_FALSE(Egress::parse({"10.0.0.0/33"}));
  EXPECT_FALSE(Egress::parse({"bad host!"}));
}

// A tiny HTTP server for the client tests: `respond` writes the whole response for each request.
struct TestServer {
  asio::io_context ioc;
  tcp::acceptor acceptor{ioc, {asio::ip::make_address("127.0.0.1"), 0}};
  std::atomic<int> connections{0}, requests{0}, closed{0};  // closed: seen by a handler
  std::function<asio::awaitable<void>(tcp::socket&, const http::request<http::string_body>&, int n)> respond;
  std::thread thread;

  void start() {
    asio::co_spawn(ioc, accept(), asio::detached);
    thread = std::thread([this] { ioc.run(); });
  }
  ~TestServer() {
    ioc.stop();
    if (thread.joinable()) thread.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(acceptor.local_endpoint().port()); }

  asio::awaitable<void> accept() {
    while (true) {
      auto s = co_await acceptor.async_accept(asio::use_awaitable);
      ++connections;
      asio::co_spawn(ioc, session(std::move(s)), asio::detached);
    }
  }
  asio::awaitable<void> session(tcp::socket s) {
    beast::flat_buffer buf;
    while (true) {
      http::request<http::string_body> req;
      auto [ec, n] = co_await http::async_read(s, buf, req, asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
      int k = ++requests;
      co_await respond(s, req, k);
    }
  }
};

asio::awaitable<void> write_all(tcp::socket& s, std::string data) {
  co_await asio::async_write(s, asio::buffer(data), asio::as_tuple(asio::use_awaitable));
}

std::string ok_response(const std::string& body) {
  return "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

template <class F>
auto run(F f) {
  asio::io_context ioc;
  auto fut = asio::co_spawn(ioc, f(ioc), asio::use_future);
  ioc.run();
  return fut.get();
}

TEST(HttpClient, PoolsKeepAliveConnections) {
  TestServer srv;
  srv.respond = [](tcp::socket& s, const http::request<http::string_body>& req, int) -> asio::awaitable<void> {
    const std::string body = "hello " + std::string(req.target());
    co_await write_all(s, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Request-ID: Req-7\r\nX-Empty:\r\nContent-Length: " +
                              std::to_string(body.size()) + "\r\n\r\n" + body);
  };
  srv.start();
  auto egress = Egress::parse({"127.0.0.1"}, false).value();
  auto bodies = run([&](asio::io_context& ioc) -> asio::awaitable<std::vector<std::string>> {
    HttpClient c(ioc.get_executor(), ClientOptions{.egress = &egress});
    std::vector<std::string> out;
    for (int i = 0; i < 3; ++i) {
      ClientRequest req{"GET", srv.url() + "/x" + std::to_string(i), {}, ""};
      auto r = co_await c.send(std::move(req));
      EXPECT_TRUE(r) << (r ? "" : r.error().message);
      if (!r) co_return out;
      EXPECT_EQ((*r)->status(), 200);
      // Headers by lower-case name, values as sent.
      EXPECT_EQ((*r)->header("content-type"), "text/plain");
      EXPECT_EQ((*r)->header("x-request-id"), "Req-7");
      EXPECT_EQ((*r)->header("x-empty"), "");
      EXPECT_EQ((*r)->header("content-length"), "9");  // "hello /x0"
      EXPECT_EQ((*r)->header("x-absent"), "");
      auto b = co_await (*r)->read_all();
      out.push_back(b ? *b : "error");
    }
    EXPECT_EQ(c.idle_connections(), 1u);
    co_return out;
  });
  EXPECT_EQ(bodies, (std::vector<std::string>{"hello /x0", "hello /x1", "hello /x2"}));
  EXPECT_EQ(srv.connections.load(), 1);
}

TEST(HttpClient, IdleConnectionsPastTheirTimeAreClosedWhateverTheirOrigin) {
  TestServer a, b;
  for (auto* srv : {&a, &b}) {
    srv->respond = [](tcp::socket& s, const http::request<http::string_body>&, int) -> asio::awaitable<void> {
      co_await write_all(s, ok_response("ok"));
    };
    srv->start();
  }
  auto egress = Egress::parse({"127.0.0.1"}, false).value();
  auto idle = run([&](asio::io_context& ioc) -> asio::awaitable<std::vector<size_t>> {
    HttpClient c(ioc.get_executor(), ClientOptions{.idle_ttl = std::chrono::milliseconds(50), .egress = &egress});
    std::vector<size_t> out;
    for (const auto* srv : {&a, &b}) {
      ClientRequest req{"GET", srv->url() + "/", {}, ""};
      auto r = co_await c.send(std::move(req));
      EXPECT_TRUE(r) << (r ? "" : r.error().message);
      if (!r) co_return out;
      auto body = co_await (*r)->read_all();
      EXPECT_TRUE(body);
      out.push_back(c.idle_connections());
      asio::steady_timer t(ioc, std::chrono::milliseconds(120));
      co_await t.async_wait(asio::use_awaitable);
    }
    co_return out;
  });
  // A's connection went idle first; by the time B's does, it is past its time and closed,
  // though A is not asked for again.
  EXPECT_EQ(idle, (std::vector<size_t>{1, 1}));
}

TEST(HttpClient, StreamsPiecesAsTheyArriveAndDroppingClosesTheConnection) {
  TestServer srv;
  std::atomic<bool> second_sent{false};
  srv.respond = [&](tcp::socket& s, const http::request<http::string_body>&, int) -> asio::awaitable<void> {
    co_await write_all(s, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n");
    co_await write_all(s, "6\r\ndata:a\r\n");
    asio::steady_timer t(s.get_executor(), std::chrono::milliseconds(300));
    co_await t.async_wait(asio::use_awaitable);
    second_sent = true;
    co_await write_all(s, "6\r\ndata:b\r\n");
    // never ends: the client drops the response, which this read sees as the connection closing
    char c;
    auto [rec, rn] = co_await s.async_read_some(asio::buffer(&c, 1), asio::as_tuple(asio::use_awaitable));
    if (rec == asio::error::eof) ++srv.closed;
  };
  srv.start();
  auto egress = Egress::parse({"127.0.0.1"}).value();
  run([&](asio::io_context& ioc) -> asio::awaitable<void> {
    HttpClient c(ioc.get_executor(), ClientOptions{.egress = &egress});
    ClientRequest req{"POST", srv.url() + "/stream", {}, "{}"};
    auto r = co_await c.send(std::move(req));
    EXPECT_TRUE(r);
    if (!r) co_return;
    auto first = co_await (*r)->read();
    EXPECT_TRUE(first);
    EXPECT_EQ(*first, "data:a");  // delivered alone: nothing waited for the next piece
    EXPECT_FALSE(second_sent.load());
    auto second = co_await (*r)->read();
    EXPECT_EQ(second.value_or(""), "data:b");
    r->reset();  // the caller goes away mid-stream
    EXPECT_EQ(c.idle_connections(), 0u);
  });
  for (int i = 0; i < 100 && srv.closed.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(srv.closed.load(), 1);  // the upstream saw the connection close
}

TEST(HttpClient, RetriesRetryAfterButReturnsOtherErrors) {
  TestServer srv;
  srv.respond = [](tcp::socket& s, const http::request<http::string_body>& req, int n) -> asio::awaitable<void> {
    if (req.target() == "/busy" && n == 1) {
      co_await write_all(s, "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Length: 4\r\n\r\nbusy");
    } else if (req.target() == "/bad") {
      co_await write_all(s, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops");
    } else {
      co_await write_all(s, ok_response("fine"));
    }
  };
  srv.start();
  auto egress = Egress::parse({"127.0.0.1"}).value();
  run([&](asio::io_context& ioc) -> asio::awaitable<void> {
    HttpClient c(ioc.get_executor(), ClientOptions{.egress = &egress});
    ClientRequest req{"GET", srv.url() + "/busy", {}, ""};
    auto r = co_await c.send(std::move(req));
    EXPECT_TRUE(r);
    if (r) { EXPECT_EQ((*r)->status(), 200); }
    ClientRequest req2{"GET", srv.url() + "/bad", {}, ""};
    auto bad = co_await c.send(std::move(req2));  // 500 without Retry-After: returned
    EXPECT_TRUE(bad);
    if (bad) {
      EXPECT_EQ((*bad)->status(), 500);
      EXPECT_EQ((co_await (*bad)->read_all()).value_or(""), "oops");
    }
  });
  EXPECT_EQ(srv.requests.load(), 3);
}

TEST(HttpClient, EgressPolicyRefusesBeforeConnecting) {
  TestServer srv;
  srv.respond = [](tcp::socket& s, const http::request<http::string_body>&, int) -> asio::awaitable<void> {
    co_await write_all(s, ok_response("x"));
  };
  srv.start();
  auto egress = Egress::parse({}).value();  // public only
  run([&](asio::io_context& ioc) -> asio::awaitable<void> {
    HttpClient c(ioc.get_executor(), ClientOptions{.egress = &egress});
    ClientRequest req{"GET", srv.url() + "/", {}, ""};
    auto r = co_await c.send(std::move(req));
    EXPECT_FALSE(r);
    if (!r) { EXPECT_EQ(r.error().code, Code::kPermissionDenied); }
    ClientRequest req2{"GET", "http://127.0.0.1:1/", {}, ""};
    auto refused = co_await c.send(std::move(req2));
    EXPECT_FALSE(refused);
  });
  EXPECT_EQ(srv.connections.load(), 0);
}

TEST(HttpClient, ConnectFailureIsUnavailable) {
  auto egress = Egress::allow_all();
  run([&](asio::io_context& ioc) -> asio::awaitable<void> {
    HttpClient c(ioc.get_executor(), ClientOptions{.max_attempts = 2, .egress = &egress});
    tcp::acceptor a(ioc, {asio::ip::make_address("127.0.0.1"), 0});
    auto port = a.local_endpoint().port();
    a.close();  // nothing listens there now
    ClientRequest req{"GET", "http://127.0.0.1:" + std::to_string(port) + "/", {}, ""};
    auto r = co_await c.send(std::move(req));
    EXPECT_FALSE(r);
    if (!r) { EXPECT_EQ(r.error().code, Code::kUnavailable); }
  });
}

}  // namespace
}  // namespace ap::net
