// Server features that need their own server options: TLS, a separate metrics listener, read
// deadlines, a streamed response whose client left early.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/socket.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cstdio>
#include <future>
#include <thread>

#include "auth/authenticator.h"
#include "gateway/routes.h"
#include "gateway/server.h"
#include "tests/integration/fixture.h"

namespace ap::testing {
namespace {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

// A self-signed certificate for 127.0.0.1, written as PEM files into `dir`.
void make_certificate(const std::string& cert, const std::string& key) {
  EVP_PKEY* pkey = EVP_EC_gen("P-256");
  ASSERT_TRUE(pkey);
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, pkey);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("127.0.0.1"), -1, -1, 0);
  X509_set_issuer_name(x, name);
  ASSERT_GT(X509_sign(x, pkey, EVP_sha256()), 0);
  FILE* f = std::fopen(cert.c_str(), "w");
  PEM_write_X509(f, x);
  std::fclose(f);
  f = std::fopen(key.c_str(), "w");
  PEM_write_PrivateKey(f, pkey, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
  X509_free(x);
  EVP_PKEY_free(pkey);
}

struct Running {
  auth::Authenticator authn{Clock::system(), {}};
  std::unique_ptr<gateway::Server> server;
  explicit Running(gateway::ServerOptions o, std::shared_ptr<gateway::Router> router = gateway::build_router()) {
    o.listen = "127.0.0.1:0";
    o.threads = 1;
    o.pool.conninfo = Database::get().app_url();
    server = std::make_unique<gateway::Server>(o, std::move(router), authn, gateway::ServerInfo{"test", {}});
    auto st = server->start();
    EXPECT_TRUE(st) << (st ? "" : st.error().message);
  }
  ~Running() { server->stop(); }
};

TEST(ServerOptions, ServesHttpsWithTheGivenCertificate) {
  std::string dir = Database::get().temp_dir();
  std::string cert = dir + "/tls.crt", key = dir + "/tls.key";
  make_certificate(cert, key);
  gateway::ServerOptions o;
  o.tls_cert = cert;
  o.tls_key = key;
  Running r(o);
  asio::io_context ioc;
  asio::ssl::context ctx(asio::ssl::context::tls_client);
  ctx.load_verify_file(cert);
  ctx.set_verify_mode(asio::ssl::verify_peer);
  beast::ssl_stream<beast::tcp_stream> stream(ioc, ctx);
  beast::get_lowest_layer(stream).connect({asio::ip::make_address("127.0.0.1"), r.server->port()});
  stream.handshake(asio::ssl::stream_base::client);
  http::request<http::empty_body> req{http::verb::get, "/ok", 11};
  req.set(http::field::host, "127.0.0.1");
  http::write(stream, req);
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(stream, buf, res);
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(res.body(), R"({"ok":true})");
  // Plain HTTP to the TLS port gets no answer.
  EXPECT_FALSE(net::http_request("http://127.0.0.1:" + std::to_string(r.server->port()), "GET",
                                 "/ok", {}, "", std::chrono::seconds(2)));
}

TEST(ServerOptions, UnreadableTlsFilesAreAClearError) {
  auth::Authenticator authn(Clock::system(), {});
  gateway::ServerOptions o;
  o.listen = "127.0.0.1:0";
  o.tls_cert = "/nonexistent.crt";
  o.tls_key = "/nonexistent.key";
  gateway::Server s(o, gateway::build_router(), authn, {"test", {}});
  auto st = s.start();
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, Code::kInvalidArgument);
}

TEST(ServerOptions, MetricsCanMoveToTheirOwnListener) {
  gateway::ServerOptions o;
  o.metrics_listen = "127.0.0.1:0";
  Running r(o);
  std::string main = "http://127.0.0.1:" + std::to_string(r.server->port());
  std::string metrics = "http://127.0.0.1:" + std::to_string(r.server->metrics_port());
  EXPECT_EQ(net::http_request(main, "GET", "/metrics")->status, 404);
  EXPECT_EQ(net::http_request(main, "GET", "/ok")->status, 200);
  auto m = net::http_request(metrics, "GET", "/metrics");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->status, 200);
  EXPECT_NE(m->body.find("agentplane_http_requests_total"), std::string::npos);
  EXPECT_EQ(net::http_request(metrics, "GET", "/ok")->status, 404);
}

TEST(ServerOptions, SlowHeadersAreCutOffAtTheDeadline) {
  gateway::ServerOptions o;
  o.header_timeout = std::chrono::seconds(1);
  o.idle_timeout = std::chrono::seconds(1);
  Running r(o);
  asio::io_context ioc;
  asio::ip::tcp::socket s(ioc);
  s.connect({asio::ip::make_address("127.0.0.1"), r.server->port()});
  timeval tv{6, 0};
  setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  asio::write(s, asio::buffer(std::string("GET /ok HTTP/1.1\r\nHost: x\r\n")));  // never finished
  auto start = std::chrono::steady_clock::now();
  char buf[64];
  boost::system::error_code ec;
  s.read_some(asio::buffer(buf), ec);
  EXPECT_EQ(ec, asio::error::eof) << ec.message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(4));
}

// A streamed response whose client left before its head could be written still runs its
// body's writer, which sees the client gone and does what it does on a disconnect (a run with
// on_disconnect=cancel is cancelled, its subscription dropped).
TEST(ServerOptions, AStreamWhoseClientLeftBeforeItsHeadStillRunsItsWriter) {
  std::promise<bool> wrote;
  auto written = wrote.get_future();
  auto router = gateway::build_router();
  router->add({"GET", "/test/late-stream", gateway::AuthMode::kNone, 0,
               [&wrote](gateway::RequestContext&) -> asio::awaitable<Result<gateway::Response>> {
                 asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(300));
                 co_await t.async_wait(asio::use_awaitable);  // the client leaves meanwhile
                 gateway::Response r;
                 r.content_type = "text/event-stream";
                 r.stream = [&wrote](gateway::BodyWriter& w) -> asio::awaitable<void> {
                   wrote.set_value(co_await w.write("data: x\n\n"));
                 };
                 co_return r;
               }});
  Running r({}, router);
  asio::io_context ioc;
  asio::ip::tcp::socket s(ioc);
  s.connect({asio::ip::make_address("127.0.0.1"), r.server->port()});
  asio::write(s, asio::buffer(std::string("GET /test/late-stream HTTP/1.1\r\nHost: x\r\n\r\n")));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the request is read
  linger hard{1, 0};  // closed with a reset: the server's next write fails
  setsockopt(s.native_handle(), SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
  s.close();
  ASSERT_EQ(written.wait_for(std::chrono::seconds(5)), std::future_status::ready) << "the writer never ran";
  EXPECT_FALSE(written.get()) << "its write reached a client that had left";
}

}  // namespace
}  // namespace ap::testing
