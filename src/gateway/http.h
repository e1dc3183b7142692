// The server's own request and response types: what handlers see, without Beast's headers.
// Header names are lower-case. Thread-safe: plain values.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <ctime>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ap::gateway {

struct Header {
  std::string name;  // lower-case
  std::string value;
};

struct Request {
  std::string method;  // "GET"
  std::string target;  // path and query as received
  std::vector<Header> headers;
  std::string body;

  std::string_view path() const;
  std::string_view query() const;
  // The first header of that (lower-case) name, or empty.
  std::string_view header(std::string_view lname) const;
  // A query parameter, percent-decoded; nullopt when absent.
  std::optional<std::string> query_param(std::string_view name) const;
  // Every value of a repeated query parameter (?a=1&a=2), in order.
  std::vector<std::string> query_params(std::string_view name) const;
};

// Where a streamed body goes: each write is sent at once as one chunk. false: the client is gone
// (or too slow: a write that takes longer than the body timeout).
class BodyWriter {
 public:
  virtual ~BodyWriter() = default;
  // Writes a piece of the body now; false once the client is gone.
  virtual boost::asio::awaitable<bool> write(std::string chunk) = 0;
  // Writes the last piece together with the body's end (one write, not two); nothing may follow.
  virtual boost::asio::awaitable<bool> finish(std::string chunk) = 0;
  // Sends the head now if it still waits for the body (Response::head_with_body).
  virtual boost::asio::awaitable<bool> flush() = 0;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<Header> headers;
  // A streamed body (Server-Sent Events): set, the headers go out, then this runs on the
  // request's shard and writes the body chunk by chunk; the response ends when it returns.
  std::function<boost::asio::awaitable<void>(BodyWriter&)> stream;
  // A stream's head waits for its first piece (or its end) and goes out in the same write. Only
  // for a body that follows at once (a model's reply already arriving) or that calls flush()
  // before it waits.
  bool head_with_body = false;

  static Response json(int status, std::string body) {
    return Response{status, "application/json", std::move(body), {}};
  }
};

std::string percent_decode(std::string_view s);

// The Date header's value for `t` (RFC 9110's IMF-fixdate: "Mon, 07 Dec 2026 06:38:39 GMT").
std::string http_date(std::time_t t);
// The same for now, made at most once a second per thread (every response carries it).
const std::string& http_date_now();

}  // namespace ap::gateway
