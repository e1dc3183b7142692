// The model layer's shared services, one per process: the tenants' model routes, the price table,
// the usage writer, the egress policy for upstream calls, and the limiter. Used by the gateway's
// model endpoints and by the worker's llm nodes. Thread-safe (each member is).
#pragma once

#include <memory>
#include <optional>

#include "llm/prices.h"
#include "llm/routes.h"
#include "llm/usage.h"
#include "net/egress.h"

namespace ap::ratelimit {
class Limits;
}

namespace ap::llm {

struct ModelServices {
  ModelRoutes routes;
  PriceTable prices = PriceTable::shipped();
  UsageRecorder* usage = nullptr;         // null: usage not recorded (tools that need no database)
  net::Egress egress = net::Egress::parse({}).value();  // public addresses only
  ratelimit::Limits* limits = nullptr;    // null: no limits

  // The price of a route's model: its override, else the table's entry for provider/upstream model.
  std::optional<Price> price_of(const ModelRoute& r) const {
    if (r.price) return r.price;
    return prices.find(r.provider, r.upstream_model);
  }
  std::string price_version(const ModelRoute& r) const { return r.price ? prices.version() + "+route" : prices.version(); }
};

}  // namespace ap::llm
