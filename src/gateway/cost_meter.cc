#include "gateway/cost_meter.h"

#include <nlohmann/json.hpp>

#include "common/clock.h"

namespace ap::gateway {

void CostMeter::add(const std::string& tenant, const std::string& model, int64_t prompt_tokens,
                    int64_t completion_tokens, int64_t cost_micro_usd, bool unpriced) {
  Totals& t = tenants_[tenant][model];
  ++t.requests;
  t.prompt_tokens += prompt_tokens;
  t.completion_tokens += completion_tokens;
  t.cost_micro_usd += cost_micro_usd;
  t.unpriced_requests += unpriced ? 1 : 0;
}

std::vector<std::pair<std::string, nlohmann::json>> CostMeter::take() {
  const auto now = std::chrono::system_clock::now();
  std::vector<std::pair<std::string, nlohmann::json>> out;
  for (const auto& [tenant, models] : tenants_) {
    Totals sum;
    nlohmann::json per_model = nlohmann::json::object();
    for (const auto& [model, t] : models) {
      per_model[model] = {{"requests", t.requests}, {"prompt_tokens", t.prompt_tokens},
                          {"completion_tokens", t.completion_tokens}, {"cost_micro_usd", t.cost_micro_usd},
                          {"unpriced_requests", t.unpriced_requests}};
      sum.requests += t.requests;
      sum.prompt_tokens += t.prompt_tokens;
      sum.completion_tokens += t.completion_tokens;
      sum.cost_micro_usd += t.cost_micro_usd;
      sum.unpriced_requests += t.unpriced_requests;
    }
    out.emplace_back(tenant, nlohmann::json{{"source", "gateway"},
                                            {"from", format_rfc3339(since_)},
                                            {"to", format_rfc3339(now)},
                                            {"requests", sum.requests},
                                            {"prompt_tokens", sum.prompt_tokens},
                                            {"completion_tokens", sum.completion_tokens},
                                            {"cost_micro_usd", sum.cost_micro_usd},
                                            {"unpriced_requests", sum.unpriced_requests},
                                            {"models", per_model}});
  }
  tenants_.clear();
  since_ = now;
  return out;
}

}  // namespace ap::gateway
