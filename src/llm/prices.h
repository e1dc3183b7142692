// Model prices and the cost of a call. The table uses the field names of LiteLLM's
// model_prices_and_context_window.json (input_cost_per_token, output_cost_per_token,
// cache_read_input_token_cost, cache_creation_input_token_cost, output_cost_per_reasoning_token,
// litellm_provider), so an operator can drop in the table they already maintain. We ship one
// (data/model_prices.json, compiled in); a deployment may replace or extend it (--price-table) and a
// model route may override its model's price. The version of a table is "sha256:" + the first 12
// hex digits of its bytes, recorded with every usage record.
// Costs are integers: prices are held in pico-USD per token, costs in micro-USD (rounded half up).
// Immutable once built: thread-safe.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/result.h"
#include "llm/chat.h"

namespace ap::llm {

struct Price {
  int64_t input = 0;           // pico-USD per input token
  int64_t output = 0;          // per output token
  int64_t cache_read = -1;     // per cached input token (-1: as input)
  int64_t cache_creation = -1; // per cache-writing input token (-1: as input)
  int64_t reasoning = -1;      // per reasoning token (-1: as output)
  // From a LiteLLM-style entry; InvalidArgument if a price field is not a non-negative number or
  // neither input nor output price is given.
  static Result<Price> from_json(const nlohmann::json& entry);
};

struct Cost {
  int64_t micro_usd = 0;
  bool unpriced = false;
  std::string price_version;
};

Cost cost_of(const Usage& usage, const std::optional<Price>& price, std::string price_version);

class PriceTable {
 public:
  // The table compiled into the binary.
  static const PriceTable& shipped();
  static Result<PriceTable> parse(std::string_view json_text);
  static Result<PriceTable> load_file(const std::string& path);
  // `overrides` entries replace this table's (the version covers both).
  PriceTable merged(const PriceTable& overrides) const;

  // By "provider/model" first, then the model alone; nullopt if unpriced.
  std::optional<Price> find(std::string_view provider, std::string_view model) const;
  const std::string& version() const { return version_; }
  size_t size() const { return prices_.size(); }

 private:
  std::unordered_map<std::string, Price> prices_;
  std::string version_;
};

}  // namespace ap::llm
