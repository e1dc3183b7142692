// Tools an agent may call: their definitions (from a graph spec or an assistant's config), the
// schema the model is shown, and running one call. Kinds of tool:
// - built-in, named by a string or {"name": ...}: `calculator` (arithmetic on an expression) and
//   `current_time` (now, in an IANA time zone);
// - http: {"name", "description", "parameters" (JSON Schema), "http": {"method", "url",
//   "headers", "credential": {"name", "header", "prefix"}, "timeout_s"}}; `{arg}` in the URL is
//   replaced by the URL-encoded argument, the other arguments go in the query (GET, DELETE) or
//   as a JSON body; the credential's value is injected by the platform from the tenant's vault.
// - `code`, named like a built-in: runs {language, code} in the tenant's sandbox (no stdin) and
//   answers with what it printed (stdout, then stderr); a failure is an error tool message.
#pragma once

#include <string>
#include <vector>

#include "common/result.h"
#include "graph/nodes/run_services.h"

namespace ap::graph::nodes {

struct ToolDef {
  llm::ToolSpec spec;    // what the model sees
  std::string builtin;   // a built-in's name, or empty for http
  HttpCall http;         // http: method, url template, headers, credential, timeout
  bool network = false;  // code: the sandbox gets egress (if the tenant's policy allows it)
};

// Parses a list of tool definitions. InvalidArgument naming every bad entry.
Result<std::vector<ToolDef>> parse_tools(const Json& list);

// The outcome of one tool call: the tool message's content, and whether it is an error (the
// model sees errors as tool messages with status "error" and may recover).
struct ToolOutcome {
  std::string content;
  bool error = false;
};
ToolOutcome run_tool(const ToolDef& tool, const Json& args, RunServices* services);

// The built-in calculator, exposed for tests: + - * / % ^ (power), parentheses, unary minus,
// decimals and exponents, and sqrt abs round floor ceil min max ln log10 exp, pi, e.
Result<double> calculate(std::string_view expression);

}  // namespace ap::graph::nodes
