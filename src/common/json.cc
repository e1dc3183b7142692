#include "common/json.h"

#include <nlohmann/json.hpp>

namespace ap {

Result<Json> parse_json(std::string_view text) {
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Error::invalid_argument("malformed JSON body");
  return j;
}

}  // namespace ap
