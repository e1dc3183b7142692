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

// The value of the top-level object member `name` in `text`, without building the rest of the
// document (a completion's choices can be large, and only its usage is wanted). The last one
// when the name repeats, as a full parse (and JavaScript's JSON.parse) would take it. Null when
// `text` is not an object, has no such member, or is malformed before that member ends.
Json top_level_member(std::string_view text, std::string_view name);

}  // namespace ap
