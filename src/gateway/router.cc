#include "gateway/router.h"

namespace ap::gateway {
namespace {

std::vector<std::string_view> split(std::string_view path) {
  std::vector<std::string_view> out;
  while (!path.empty()) {
    if (path.front() == '/') {
      path.remove_prefix(1);
      continue;
    }
    auto slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash);
  }
  return out;
}

}  // namespace

std::string_view RequestContext::param(std::string_view name) const {
  for (const auto& [k, v] : params)
    if (k == name) return v;
  return {};
}

void Router::add(Route route) {
  routes_.push_back(std::make_unique<Route>(std::move(route)));
  Compiled c{routes_.back().get(), {}};
  for (auto s : split(routes_.back()->pattern)) c.segments.emplace_back(s);
  compiled_.push_back(std::move(c));
}

Match Router::match(std::string_view method, std::string_view path) const {
  Match m;
  auto segs = split(path);
  for (const auto& c : compiled_) {
    if (c.segments.size() != segs.size()) continue;
    std::vector<std::pair<std::string_view, std::string_view>> params;
    bool ok = true;
    for (size_t i = 0; i < segs.size() && ok; ++i) {
      const auto& s = c.segments[i];
      if (s.size() > 2 && s.front() == '{' && s.back() == '}') {
        params.emplace_back(std::string_view(s).substr(1, s.size() - 2), segs[i]);
      } else {
        ok = s == segs[i];
      }
    }
    if (!ok) continue;
    if (c.route->method == method) {
      m.route = c.route;
      m.params = std::move(params);
      m.method_mismatch = false;
      return m;
    }
    m.method_mismatch = true;
    if (!m.allow.empty()) m.allow += ", ";
    m.allow += c.route->method;
  }
  return m;
}

}  // namespace ap::gateway
