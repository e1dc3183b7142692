// The anchor for GET /ok: a bare one-thread Beast coroutine server answering {"ok":true}, with
// no routing, auth, logging or metrics. Usage: bare_server PORT
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdlib>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

asio::awaitable<void> session(tcp::socket sock) {
  beast::flat_buffer buf;
  for (;;) {
    http::request<http::string_body> req;
    auto [ec, n] = co_await http::async_read(sock, buf, req, asio::as_tuple(asio::use_awaitable));
    if (ec) break;
    http::response<http::string_body> res{http::status::ok, 11};
    res.set(http::field::content_type, "application/json");
    res.body() = R"({"ok":true})";
    res.keep_alive(req.keep_alive());
    res.prepare_payload();
    auto [wec, wn] = co_await http::async_write(sock, res, asio::as_tuple(asio::use_awaitable));
    if (wec || !req.keep_alive()) break;
  }
}

asio::awaitable<void> listen(tcp::acceptor& acc) {
  for (;;) {
    auto [ec, s] = co_await acc.async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec) continue;
    s.set_option(tcp::no_delay(true));
    asio::co_spawn(acc.get_executor(), session(std::move(s)), asio::detached);
  }
}

int main(int argc, char** argv) {
  asio::io_context ioc{1};
  tcp::acceptor acc(ioc, {asio::ip::make_address("127.0.0.1"),
                          static_cast<unsigned short>(argc > 1 ? std::atoi(argv[1]) : 18200)});
  asio::co_spawn(ioc, listen(acc), asio::detached);
  ioc.run();
}
