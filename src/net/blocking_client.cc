#include "net/blocking_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

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
};

Result<Target> parse_base(const std::string& base_url) {
  std::string_view u = base_url;
  if (!u.starts_with("http://"))
    return Error::invalid_argument("URL must start with http:// (got '" + base_url + "')");
  u.remove_prefix(7);
  while (!u.empty() && u.back() == '/') u.remove_suffix(1);
  auto colon = u.rfind(':');
  if (colon == std::string_view::npos) return Error::invalid_argument("URL needs a port: " + base_url);
  return Target{std::string(u.substr(0, colon)), std::string(u.substr(colon + 1))};
}

http::request<http::string_body> make_request(const Target& t, const std::string& method, const std::string& target,
                                              const std::vector<std::pair<std::string, std::string>>& headers,
                                              const std::string& body) {
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, t.port == "80" ? t.host : t.host + ":" + t.port);  // RFC 9110: the port unless default
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
    std::string name(f.name_string());
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.headers.emplace_back(std::move(name), std::string(f.value()));
  }
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
    beast::tcp_stream stream(ioc);
    stream.expires_after(timeout);
    stream.connect(resolver.resolve(t.host, t.port));
    auto req = make_request(t, method, target, headers, body);
    stream.expires_after(timeout);
    http::write(stream, req);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 * 1024 * 1024);
    http::read(stream, buffer, parser);
    auto res = parser.release();
    HttpResponse out;
    copy_headers(res, out);
    out.body = std::move(res.body());
    beast::error_code ec;
    stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    return out;
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
    beast::tcp_stream stream(ioc);
    stream.expires_after(idle);
    stream.connect(resolver.resolve(t.host, t.port));
    auto req = make_request(t, method, target, headers, body);
    http::write(stream, req);
    beast::flat_buffer buffer;
    http::response_parser<http::buffer_body> parser;
    parser.body_limit(boost::none);
    stream.expires_after(idle);
    http::read_header(stream, buffer, parser);
    HttpResponse out;
    copy_headers(parser.get(), out);
    char chunk[8192];
    while (!parser.is_done()) {
      parser.get().body().data = chunk;
      parser.get().body().size = sizeof(chunk);
      stream.expires_after(idle);
      beast::error_code ec;
      http::read_some(stream, buffer, parser, ec);
      if (ec == http::error::need_buffer) ec = {};
      if (ec) throw beast::system_error(ec);
      size_t n = sizeof(chunk) - parser.get().body().size;
      if (n) on_data(std::string_view(chunk, n));
    }
    beast::error_code ec;
    stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    return out;
  } catch (const std::exception& e) {
    return Error::unavailable("stream from " + base_url + " failed: " + e.what());
  }
}

}  // namespace ap::net
