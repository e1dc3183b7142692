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

Result<HttpResponse> http_request(const std::string& base_url, const std::string& method,
                                  const std::string& target,
                                  const std::vector<std::pair<std::string, std::string>>& headers,
                                  const std::string& body, std::chrono::milliseconds timeout) {
  std::string_view u = base_url;
  if (!u.starts_with("http://"))
    return Error::invalid_argument("URL must start with http:// (got '" + base_url + "')");
  u.remove_prefix(7);
  while (!u.empty() && u.back() == '/') u.remove_suffix(1);
  auto colon = u.rfind(':');
  if (colon == std::string_view::npos) return Error::invalid_argument("URL needs a port: " + base_url);
  std::string host(u.substr(0, colon)), port(u.substr(colon + 1));
  try {
    asio::io_context ioc;
    asio::ip::tcp::resolver resolver(ioc);
    beast::tcp_stream stream(ioc);
    stream.expires_after(timeout);
    auto results = resolver.resolve(host, port);
    stream.connect(results);
    http::request<http::string_body> req{http::string_to_verb(method), target, 11};
    req.set(http::field::host, port == "80" ? host : host + ":" + port);  // RFC 9110: the port unless default
    req.set(http::field::user_agent, "agentplane-cli");
    for (const auto& [k, v] : headers) req.set(k, v);
    if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
      if (req[http::field::content_type].empty()) req.set(http::field::content_type, "application/json");
      req.body() = body;
    }
    req.prepare_payload();
    stream.expires_after(timeout);
    http::write(stream, req);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 * 1024 * 1024);
    http::read(stream, buffer, parser);
    auto res = parser.release();
    HttpResponse out;
    out.status = res.result_int();
    for (const auto& f : res) {
      std::string name(f.name_string());
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      out.headers.emplace_back(std::move(name), std::string(f.value()));
    }
    out.body = std::move(res.body());
    beast::error_code ec;
    stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    return out;
  } catch (const std::exception& e) {
    return Error::unavailable("cannot reach " + base_url + ": " + e.what());
  }
}

}  // namespace ap::net
