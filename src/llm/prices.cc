#include "llm/prices.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/crypto.h"
#include "common/embedded.h"

namespace ap::llm {
namespace prices_embedded {
std::span<const EmbeddedFile> embedded_files();
}

namespace {

Result<int64_t> pico(const Json& entry, const char* field, int64_t absent) {
  auto it = entry.find(field);
  if (it == entry.end() || it->is_null()) return absent;
  if (!it->is_number() || it->get<double>() < 0 || !std::isfinite(it->get<double>()))
    return Error::invalid_argument(std::string(field) + " must be a non-negative number (USD per token)");
  return static_cast<int64_t>(std::llround(it->get<double>() * 1e12));
}

std::string version_of(std::string_view bytes) {
  auto d = sha256(bytes);
  return "sha256:" + hex_encode(d.data(), d.size()).substr(0, 12);
}

}  // namespace

Result<Price> Price::from_json(const Json& e) {
  if (!e.is_object()) return Error::invalid_argument("a price entry must be an object");
  Price p;
  AP_ASSIGN_OR_RETURN(p.input, pico(e, "input_cost_per_token", -1));
  AP_ASSIGN_OR_RETURN(p.output, pico(e, "output_cost_per_token", -1));
  if (p.input < 0 && p.output < 0)
    return Error::invalid_argument("a price needs input_cost_per_token or output_cost_per_token");
  p.input = std::max<int64_t>(p.input, 0);
  p.output = std::max<int64_t>(p.output, 0);
  AP_ASSIGN_OR_RETURN(p.cache_read, pico(e, "cache_read_input_token_cost", -1));
  AP_ASSIGN_OR_RETURN(p.cache_creation, pico(e, "cache_creation_input_token_cost", -1));
  AP_ASSIGN_OR_RETURN(p.reasoning, pico(e, "output_cost_per_reasoning_token", -1));
  return p;
}

Cost cost_of(const Usage& u, const std::optional<Price>& price, std::string price_version) {
  Cost c;
  c.price_version = std::move(price_version);
  if (!price) {
    c.unpriced = true;
    return c;
  }
  const Price& p = *price;
  const int64_t cached = std::clamp<int64_t>(u.cached_tokens, 0, u.prompt_tokens);
  const int64_t creation = std::clamp<int64_t>(u.cache_creation_tokens, 0, u.prompt_tokens - cached);
  const int64_t plain_in = std::max<int64_t>(u.prompt_tokens - cached - creation, 0);
  const int64_t reasoning = std::clamp<int64_t>(u.reasoning_tokens, 0, u.completion_tokens);
  const int64_t plain_out = std::max<int64_t>(u.completion_tokens - reasoning, 0);
  __int128 total = static_cast<__int128>(plain_in) * p.input +
                   static_cast<__int128>(cached) * (p.cache_read >= 0 ? p.cache_read : p.input) +
                   static_cast<__int128>(creation) * (p.cache_creation >= 0 ? p.cache_creation : p.input) +
                   static_cast<__int128>(plain_out) * p.output +
                   static_cast<__int128>(reasoning) * (p.reasoning >= 0 ? p.reasoning : p.output);
  c.micro_usd = static_cast<int64_t>((total + 500'000) / 1'000'000);
  return c;
}

Result<PriceTable> PriceTable::parse(std::string_view text) {
  auto j = Json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Error::invalid_argument("price table: not a JSON object");
  PriceTable t;
  t.version_ = version_of(text);
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "sample_spec" || !it->is_object()) continue;  // LiteLLM's documentation entry
    if (!it->contains("input_cost_per_token") && !it->contains("output_cost_per_token")) continue;  // e.g. image models
    auto p = Price::from_json(*it);
    if (!p) return Error::invalid_argument("price table: '" + it.key() + "': " + p.error().message);
    t.prices_[it.key()] = *p;
  }
  return t;
}

Result<PriceTable> PriceTable::load_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Error::not_found("price table '" + path + "' cannot be read");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse(ss.str());
}

const PriceTable& PriceTable::shipped() {
  static const PriceTable t = [] {
    for (const auto& f : prices_embedded::embedded_files())
      if (std::string_view(f.name) == "model_prices.json") {
        auto r = parse(f.content);
        if (r) return std::move(*r);
      }
    return PriceTable{};
  }();
  return t;
}

PriceTable PriceTable::merged(const PriceTable& o) const {
  PriceTable t = *this;
  for (const auto& [k, v] : o.prices_) t.prices_[k] = v;
  t.version_ = version_of(version_ + "+" + o.version_);
  return t;
}

std::optional<Price> PriceTable::find(std::string_view provider, std::string_view model) const {
  if (auto it = prices_.find(std::string(provider) + "/" + std::string(model)); it != prices_.end()) return it->second;
  if (auto it = prices_.find(std::string(model)); it != prices_.end()) return it->second;
  return std::nullopt;
}

}  // namespace ap::llm
