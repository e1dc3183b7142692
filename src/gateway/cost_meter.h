// Cost events for the audit log from the gateway's model calls: each shard adds up its calls per
// tenant and model, and its upkeep writes one "model.cost" event per tenant every few seconds
// (requests, tokens, micro-USD, per model, and the window) instead of an audit write per call.
// The usage records keep every call. One per shard; used only on that shard's thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace ap::gateway {

class CostMeter {
 public:
  struct Totals {
    int64_t requests = 0, prompt_tokens = 0, completion_tokens = 0, cost_micro_usd = 0, unpriced_requests = 0;
  };
  void add(const std::string& tenant, const std::string& model, int64_t prompt_tokens, int64_t completion_tokens,
           int64_t cost_micro_usd, bool unpriced);
  bool empty() const { return tenants_.empty(); }
  // The window's events, one per tenant (tenant id, payload), and a new window.
  std::vector<std::pair<std::string, nlohmann::json>> take();

 private:
  std::unordered_map<std::string, std::map<std::string, Totals>> tenants_;
  std::chrono::system_clock::time_point since_ = std::chrono::system_clock::now();
};

}  // namespace ap::gateway
