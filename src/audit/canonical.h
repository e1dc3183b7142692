// Canonical JSON (RFC 8785-style) for audit entries: the exact bytes an entry's hash covers.
// Object members sorted by key (UTF-16 code units, as RFC 8785 says), no whitespace, strings
// escaped as ECMAScript's JSON.stringify does (\" \\ \b \f \n \r \t, other controls \u00xx,
// everything else as UTF-8), integers as decimal. Non-integral numbers are written with the
// shortest round-trip form (RFC 8785's ES6 form can differ for exponents): keep them out of
// audit payloads (amounts are integers of the smallest unit). Thread-safe.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>

namespace ap::audit {

std::string canonical_json(const nlohmann::json& value);

}  // namespace ap::audit
