// GET /ok, GET /info, GET /metrics: no authentication.
#include <nlohmann/json.hpp>

#include "gateway/routes.h"
#include "telemetry/metrics.h"

namespace ap::gateway {
namespace {

boost::asio::awaitable<Result<Response>> ok(RequestContext&) {
  co_return Response::json(200, R"({"ok":true})");
}

boost::asio::awaitable<Result<Response>> info(RequestContext& ctx) {
  nlohmann::json j;
  j["name"] = "agentplane";
  j["version"] = ctx.info.version;
  j["features"] = ctx.info.features;
  co_return Response::json(200, j.dump());
}

boost::asio::awaitable<Result<Response>> metrics(RequestContext&) {
  co_return Response{200, "text/plain; version=0.0.4; charset=utf-8",
                     telemetry::metrics().render(), {}};
}

}  // namespace

void add_system_routes(Router& r) {
  r.add({"GET", "/ok", AuthMode::kNone, 0, ok, true});
  r.add({"GET", "/info", AuthMode::kNone, 0, info, false});
  r.add({"GET", "/metrics", AuthMode::kNone, 0, metrics, true});
}

}  // namespace ap::gateway
