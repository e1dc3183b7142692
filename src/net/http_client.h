// The asynchronous HTTP/1.1 client for outbound calls (model providers, HTTP tools): Beast on
// Asio coroutines, http:// and https:// (OpenSSL; the certificate verified against the system CA
// store or SSL_CERT_FILE, the host name checked, SNI sent), keep-alive connections pooled per
// origin, connect and idle-read timeouts, every address checked against the Egress policy.
// Retries only where safe: connect failures, and 429/502/503/504 with a Retry-After the caller
// would wait for; never once a response body has started to reach the caller.
// `send` returns once the response head has arrived; the body is then read piece by piece as it
// arrives (no buffering: an SSE relay forwards each piece at once). Dropping a response before
// its end closes the connection, which cancels the request upstream.
// Not thread-safe: one client per executor (server shard), used from coroutines on it.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/result.h"
#include "net/egress.h"

namespace boost::asio::ssl {
class context;
}

namespace ap::net {

struct Url {
  bool tls = false;
  std::string host;    // lower-case; IPv6 without brackets
  std::string port;    // "443" when not given for https
  std::string target;  // "/path?query", "/" when empty
  // "http://host:port/prefix" (+ optional path joined with one "/").
  static Result<Url> parse(std::string_view url);
  std::string origin() const;  // "https://host:443"
  std::string host_header() const;
};

using Headers = std::vector<std::pair<std::string, std::string>>;  // names lower-case in responses

struct ClientOptions {
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds read_timeout{120'000};  // the longest wait for the next bytes
  size_t max_idle_per_origin = 64;
  std::chrono::milliseconds idle_ttl{30'000};  // an idle pooled connection older than this is closed
  int max_attempts = 3;                        // connect failures and retryable statuses
  std::chrono::milliseconds max_retry_after{10'000};  // a longer Retry-After is returned, not waited
  const Egress* egress = nullptr;  // required; Egress::allow_all() only where nothing else applies
  std::string user_agent = "agentplane";
};

struct ClientRequest {
  std::string method = "POST";
  std::string url;  // absolute
  Headers headers;
  std::string body;
};

class HttpClient;

// A response whose body is still arriving.
class ClientResponse {
 public:
  ~ClientResponse();
  int status() const { return status_; }
  // The value of the header `lname` (lower-case name), empty when absent.
  std::string header(std::string_view lname) const;
  // The next piece of the body, as soon as some arrives; empty at the end (then `done()`).
  boost::asio::awaitable<Result<std::string>> read();
  // The rest of the body (capped at `limit` bytes: ResourceExhausted beyond).
  boost::asio::awaitable<Result<std::string>> read_all(size_t limit = 64u << 20);
  bool done() const;
  // Whether read() has something without waiting for the network (bytes already in, or the end).
  bool ready() const;

 private:
  friend class HttpClient;
  struct Conn;
  ClientResponse() = default;
  int status_ = 0;
  std::string head_;  // the header fields, "name\0value\0" each, names lower-case (one allocation)
  std::unique_ptr<Conn> conn_;
  std::weak_ptr<void> pool_;  // where a finished keep-alive connection goes back
  bool keep_alive_ = false;
};

class HttpClient {
 public:
  HttpClient(boost::asio::any_io_executor ex, ClientOptions options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends the request; returns once the response head is in (any status). Unavailable when the
  // upstream cannot be reached, DeadlineExceeded on a timeout, PermissionDenied from the egress
  // policy, InvalidArgument for a bad URL.
  boost::asio::awaitable<Result<std::unique_ptr<ClientResponse>>> send(ClientRequest request);

  size_t idle_connections() const;

 private:
  friend class ClientResponse;
  struct Pool;
  boost::asio::awaitable<Result<std::unique_ptr<ClientResponse::Conn>>> connect(const Url& url);
  boost::asio::any_io_executor ex_;
  ClientOptions options_;
  std::shared_ptr<Pool> pool_;
  std::shared_ptr<boost::asio::ssl::context> tls_ctx_;  // made on the first https request
};

}  // namespace ap::net
