// A small blocking HTTP/1.1 client (Beast), for the command-line client, OpenID key fetching and
// tests. One request per call, new connection each time; http:// and https:// (the server's
// certificate verified against the system CA store, or SSL_CERT_FILE, and its host name).
// Blocks. Thread-safe (no state).
// The asynchronous, pooled, TLS client that the model gateway needs is a separate class.
#pragma once

#include <chrono>
#include <functional>
#include <string_view>
#include <string>
#include <utility>
#include <vector>

#include "common/result.h"

namespace ap::net {

struct HttpResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-case
  std::string body;
  std::string header(const std::string& lname) const;
};

// `base_url` is "http[s]://host[:port]"; `target` is "/path?query". Unavailable if the server cannot
// be reached; InvalidArgument for a malformed URL.
Result<HttpResponse> http_request(const std::string& base_url, const std::string& method,
                                  const std::string& target,
                                  const std::vector<std::pair<std::string, std::string>>& headers = {},
                                  const std::string& body = "",
                                  std::chrono::milliseconds timeout = std::chrono::seconds(30));

// As http_request, but the body is handed to `on_data` piece by piece as it arrives (server-sent
// events); `idle` bounds the wait for each piece. The returned body is empty.
Result<HttpResponse> http_stream(const std::string& base_url, const std::string& method, const std::string& target,
                                 const std::vector<std::pair<std::string, std::string>>& headers, const std::string& body,
                                 const std::function<void(std::string_view)>& on_data,
                                 std::chrono::milliseconds idle = std::chrono::seconds(60));

}  // namespace ap::net
