#include "net/egress.h"

#include <algorithm>
#include <array>
#include <cctype>

#include "common/text.h"

namespace ap::net {
namespace ip = boost::asio::ip;

namespace {

std::string lower(std::string_view s) {
  std::string out = ascii_lower(s);
  while (!out.empty() && out.back() == '.') out.pop_back();  // "example.com." is "example.com"
  return out;
}

// True if the first `prefix` bits of a and b agree (same family).
template <size_t N>
bool prefix_match(const std::array<unsigned char, N>& a, const std::array<unsigned char, N>& b, int prefix) {
  for (size_t i = 0; i < N && prefix > 0; ++i, prefix -= 8) {
    unsigned char mask = prefix >= 8 ? 0xff : static_cast<unsigned char>(0xff << (8 - prefix));
    if ((a[i] & mask) != (b[i] & mask)) return false;
  }
  return true;
}

bool in(const ip::address& addr, const char* base, int prefix) {
  auto b = ip::make_address(base);
  if (addr.is_v4() != b.is_v4()) return false;
  if (addr.is_v4()) return prefix_match(addr.to_v4().to_bytes(), b.to_v4().to_bytes(), prefix);
  return prefix_match(addr.to_v6().to_bytes(), b.to_v6().to_bytes(), prefix);
}

// An IPv4-mapped or -compatible IPv6 address is judged as the IPv4 address it carries.
ip::address unmap(const ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) return ip::make_address_v4(ip::v4_mapped, a.to_v6());
  return a;
}

}  // namespace

Result<Egress> Egress::parse(const std::vector<std::string>& entries, bool public_allowed) {
  Egress e;
  e.public_allowed_ = public_allowed;
  for (const auto& raw : entries) {
    std::string entry = lower(raw);
    if (entry.empty()) continue;
    auto slash = entry.find('/');
    boost::system::error_code ec;
    auto addr = ip::make_address(entry.substr(0, slash), ec);
    if (!ec) {
      int max = addr.is_v4() ? 32 : 128;
      int prefix = max;
      if (slash != std::string::npos) {
        const std::string p = entry.substr(slash + 1);
        if (p.empty() || p.size() > 3 || !std::all_of(p.begin(), p.end(), ::isdigit) || std::stoi(p) > max)
          return Error::invalid_argument("egress entry '" + raw + "': bad prefix length");
        prefix = std::stoi(p);
      }
      e.networks_.push_back({unmap(addr), prefix});
      continue;
    }
    if (slash != std::string::npos) return Error::invalid_argument("egress entry '" + raw + "': not an address/prefix");
    if (entry.starts_with("*.")) {
      e.suffixes_.push_back(entry.substr(1));
      continue;
    }
    if (entry.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-.") != std::string::npos)
      return Error::invalid_argument("egress entry '" + raw + "': not a host name, wildcard or network");
    e.hosts_.push_back(entry);
  }
  return e;
}

Egress Egress::allow_all() {
  Egress e;
  e.all_ = true;
  return e;
}

bool Egress::is_internal(const ip::address& a0) {
  auto a = unmap(a0);
  if (a.is_unspecified() || a.is_loopback() || a.is_multicast()) return true;
  if (a.is_v4()) {
    static const std::pair<const char*, int> nets[] = {
        {"0.0.0.0", 8},      {"10.0.0.0", 8},    {"100.64.0.0", 10}, {"127.0.0.0", 8},     {"169.254.0.0", 16},
        {"172.16.0.0", 12},  {"192.0.0.0", 24},  {"192.0.2.0", 24},  {"192.168.0.0", 16},  {"198.18.0.0", 15},
        {"198.51.100.0", 24}, {"203.0.113.0", 24}, {"224.0.0.0", 4},  {"240.0.0.0", 4}};
    for (const auto& [base, prefix] : nets)
      if (in(a, base, prefix)) return true;
    return false;
  }
  static const std::pair<const char*, int> nets6[] = {
      {"fc00::", 7}, {"fe80::", 10}, {"fec0::", 10}, {"ff00::", 8}, {"64:ff9b::", 96}, {"100::", 64}, {"2001:db8::", 32}};
  for (const auto& [base, prefix] : nets6)
    if (in(a, base, prefix)) return true;
  return false;
}

bool Egress::host_listed(std::string_view host) const {
  const std::string h = lower(host);
  if (std::find(hosts_.begin(), hosts_.end(), h) != hosts_.end()) return true;
  for (const auto& s : suffixes_)
    if (h.size() > s.size() && h.ends_with(s)) return true;
  return false;
}

bool Egress::network_listed(const ip::address& a0) const {
  auto a = unmap(a0);
  for (const auto& n : networks_) {
    if (n.base.is_v4() != a.is_v4()) continue;
    bool match = a.is_v4() ? prefix_match(a.to_v4().to_bytes(), n.base.to_v4().to_bytes(), n.prefix)
                           : prefix_match(a.to_v6().to_bytes(), n.base.to_v6().to_bytes(), n.prefix);
    if (match) return true;
  }
  return false;
}

Status Egress::check(std::string_view host, const ip::address& addr) const {
  if (all_ || network_listed(addr)) return {};
  const bool internal = is_internal(addr);
  // A listed host name may resolve to internal addresses only if its network is listed too:
  // naming a host is not meant to open the platform's own network.
  if (!internal && (public_allowed_ || host_listed(host))) return {};
  return Error::permission_denied(
      "outbound request to '" + std::string(host) + "' refused: " + addr.to_string() +
      (internal ? " is a private, loopback or link-local address; an operator must list it in the egress allowlist"
                : " is not in the egress allowlist"));
}

}  // namespace ap::net
