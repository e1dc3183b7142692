// The outbound policy: which hosts and networks the platform's own requests (model base URLs,
// HTTP tools, webhooks) may reach. Private, loopback, link-local, unique-local, CGNAT, multicast
// and unspecified addresses are refused unless an entry allows them (no SSRF into the platform's
// own network); public addresses are allowed unless the policy is "listed only".
// Entries: a host name ("api.openai.com"), a wildcard ("*.example.com": sub-domains only), an
// address or a network in CIDR form ("127.0.0.1", "10.0.0.0/8", "fd00::/8").
// The check runs on each address a host name resolves to, and the connection goes to the very
// address that was checked (no DNS rebinding between check and connect).
// Immutable once built: thread-safe.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace ap::net {

class Egress {
 public:
  // `entries` as above; `public_allowed`: false = only listed hosts and networks.
  static Result<Egress> parse(const std::vector<std::string>& entries, bool public_allowed = true);
  // Allows everything (tests of other components, the blocking CLI client). Never the default.
  static Egress allow_all();

  // OK, or PermissionDenied naming the host and why.
  Status check(std::string_view host, const boost::asio::ip::address& addr) const;
  // Private, loopback, link-local, unique-local, CGNAT, multicast, unspecified, reserved.
  static bool is_internal(const boost::asio::ip::address& addr);
  bool host_listed(std::string_view host) const;

 private:
  struct Network {
    boost::asio::ip::address base;
    int prefix = 0;
  };
  bool network_listed(const boost::asio::ip::address& addr) const;
  std::vector<std::string> hosts_;     // lower-case exact names
  std::vector<std::string> suffixes_;  // ".example.com" from "*.example.com"
  std::vector<Network> networks_;
  bool public_allowed_ = true;
  bool all_ = false;
};

}  // namespace ap::net
