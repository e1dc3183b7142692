#include "net/blocking_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "common/text.h"

namespace ap::net {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

std::string HttpResponse::header(const std::string& lname) const {
  for (const auto& [k, v] : headers)
    if (k == lname) return v;
  return {};
}

namespace {

struct Target {
  std::string host, port;
  bool tls = false;
};

Result<Target> parse_base(const std::string& base_url) {
  std::string_view u = base_url;
  bool tls = u.starts_with("https://");
  if (!tls && !u.starts_with("http://"))
    return Error::invalid_argument("URL must start with http:// or https:// (got '" + base_url + "')");
  u.remove_prefix(tls ? 8 : 7);
  while (!u.empty() && u.back() == '/') u.remove_suffix(1);
  if (auto slash = u.find('/'); slash != std::string_view::npos) u = u.substr(0, slash);
  auto colon = u.rfind(':');
  if (colon == std::string_view::npos) return Target{std::string(u), tls ? "443" : "80", tls};
  return Target{std::string(u.substr(0, colon)), std::string(u.substr(colon + 1)), tls};
}

// A TLS client context that verifies the server: the system's CA store (or SSL_CERT_FILE /
// SSL_CERT_DIR), TLS 1.2 or later.
asio::ssl::context client_tls() {
  asio::ssl::context ctx(asio::ssl::context::tls_client);
  ctx.set_options(asio::ssl::context::no_sslv2 | asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                  asio::ssl::context::no_tlsv1_1);
  ctx.set_default_verify_paths();
  ctx.set_verify_mode(asio::ssl::verify_peer);
  return ctx;
}

// Connects `stream`'s lowest layer and, for TLS, handshakes with SNI and host-name verification.
template <class Stream>
void open(Stream& stream, asio::ip::tcp::resolver& resolver, const Target& t, std::chrono::milliseconds timeout) {
  beast::get_lowest_layer(stream).expires_after(timeout);
  beast::get_lowest_layer(stream).connect(resolver.resolve(t.host, t.port));
  if constexpr (!std::is_same_v<Stream, beast::tcp_stream>) {
    if (!SSL_set_tlsext_host_name(stream.native_handle(), t.host.c_str()))
      throw beast::system_error(beast::error_code(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category()));
    stream.set_verify_callback(asio::ssl::host_name_verification(t.host));
    stream.handshake(asio::ssl::stream_base::client);
  }
}

template <class Stream>
void close(Stream& stream) {
  beast::error_code ec;
  if constexpr (!std::is_same_v<Stream, beast::tcp_stream>) stream.shutdown(ec);
  beast::get_lowest_layer(stream).socket().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
}

http::request<http::string_body> make_request(const Target& t, const std::string& method, const std::string& target,
                                              const std::vector<std::pair<std::string, std::string>>& headers,
                                              const std::string& body) {
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  const bool default_port = t.port == (t.tls ? "443" : "80");
  req.set(http::field::host, default_port ? t.host : t.host + ":" + t.port);  // RFC 9110: the port unless default
  req.set(http::field::user_agent, "agentplane-cli");
  for (const auto& [k, v] : headers) req.set(k, v);
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    if (req[http::field::content_type].empty()) req.set(http::field::content_type, "application/json");
    req.body() = body;
  }
  req.prepare_payload();
  return req;
}

template <class Message>
void copy_headers(const Message& res, HttpResponse& out) {
  out.status = res.result_int();
  for (const auto& f : res) {
    out.headers.emplace_back(ascii_lower(f.name_string()), std::string(f.value()));
  }
}

}  // namespace

namespace {

template <class Stream>
HttpResponse request_on(Stream& stream, const Target& t, const std::string& method, const std::string& target,
                        const std::vector<std::pair<std::string, std::string>>& headers, const std::string& body,
                        std::chrono::milliseconds timeout) {
  auto req = make_request(t, method, target, headers, body);
  beast::get_lowest_layer(stream).expires_after(timeout);
  http::write(stream, req);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  http::read(stream, buffer, parser);
  auto res = parser.release();
  HttpResponse out;
  copy_headers(res, out);
  out.body = std::move(res.body());
  close(stream);
  return out;
}

template <class Stream>
HttpResponse stream_on(Stream& stream, const Target& t, const std::string& method, const std::string& target,
                       const std::vector<std::pair<std::string, std::string>>& headers, const std::string& body,
                       const std::function<void(std::string_view)>& on_data, std::chrono::milliseconds idle) {
  auto req = make_request(t, method, target, headers, body);
  http::write(stream, req);
  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  parser.body_limit(boost::none);
  beast::get_lowest_layer(stream).expires_after(idle);
  http::read_header(stream, buffer, parser);
  HttpResponse out;
  copy_headers(parser.get(), out);
  char chunk[8192];
  while (!parser.is_done()) {
    parser.get().body().data = chunk;
    parser.get().body().size = sizeof(chunk);
    beast::get_lowest_layer(stream).expires_after(idle);
    beast::error_code ec;
    http::read_some(stream, buffer, parser, ec);
    if (ec == http::error::need_buffer) ec = {};
    if (ec) throw beast::system_error(ec);
    size_t n = sizeof(chunk) - parser.get().body().size;
    if (n) on_data(std::string_view(chunk, n));
  }
  close(stream);
  return out;
}

}  // namespace

Result<HttpResponse> http_request(const std::string& base_url, const std::string& method,
                                  const std::string& target,
                                  const std::vector<std::pair<std::string, std::string>>& headers,
                                  const std::string& body, std::chrono::milliseconds timeout) {
  AP_ASSIGN_OR_RETURN(Target t, parse_base(base_url));
  try {
    asio::io_context ioc;
    asio::ip::tcp::resolver resolver(ioc);
    if (t.tls) {
      auto ctx = client_tls();
      beast::ssl_stream<beast::tcp_stream> stream(ioc, ctx);
      open(stream, resolver, t, timeout);
      return request_on(stream, t, method, target, headers, body, timeout);
    }
    beast::tcp_stream stream(ioc);
    open(stream, resolver, t, timeout);
    return request_on(stream, t, method, target, headers, body, timeout);
  } catch (const std::exception& e) {
    return Error::unavailable("cannot reach " + base_url + ": " + e.what());
  }
}

Result<HttpResponse> http_stream(const std::string& base_url, const std::string& method, const std::string& target,
                                 const std::vector<std::pair<std::string, std::string>>& headers, const std::string& body,
                                 const std::function<void(std::string_view)>& on_data, std::chrono::milliseconds idle) {
  AP_ASSIGN_OR_RETURN(Target t, parse_base(base_url));
  try {
    asio::io_context ioc;
    asio::ip::tcp::resolver resolver(ioc);
    if (t.tls) {
      auto ctx = client_tls();
      beast::ssl_stream<beast::tcp_stream> stream(ioc, ctx);
      open(stream, resolver, t, idle);
      return stream_on(stream, t, method, target, headers, body, on_data, idle);
    }
    beast::tcp_stream stream(ioc);
    open(stream, resolver, t, idle);
    return stream_on(stream, t, method, target, headers, body, on_data, idle);
  } catch (const std::exception& e) {
    return Error::unavailable("stream from " + base_url + " failed: " + e.what());
  }
}

}  // namespace ap::net
