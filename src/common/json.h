// JSON helpers on nlohmann::json, without exceptions. Only the forward declaration is pulled in
// here; .cc files that build JSON include <nlohmann/json.hpp> themselves.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string_view>

#include "common/result.h"

namespace ap {

using Json = nlohmann::json;

// Parses `text`; InvalidArgument naming the problem ("malformed JSON body") on bad input.
Result<Json> parse_json(std::string_view text);

}  // namespace ap
