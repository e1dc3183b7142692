// Code an agent runs in the sandbox: the `code` node kind and the `code` tool share this.
// A script in Python 3, shell or Node.js becomes a sandbox spec (the source as a file in the
// workspace, its input as JSON on stdin); the platform (RunServices::code) runs it under the
// tenant's sandbox policy.
#pragma once

#include <chrono>
#include <string>

#include "common/result.h"
#include "exec/sandbox/sandbox.h"
#include "graph/spec.h"

namespace ap::graph::nodes {

// "python" (also "python3", "py"), "shell" ("sh"), "node" ("javascript", "js"): the canonical
// name, or InvalidArgument listing the languages.
Result<std::string> code_language(const std::string& name);
// The spec that runs `source` in `language` with `stdin_data` on stdin.
sandbox::Spec code_spec(const std::string& language, const std::string& source, std::string stdin_data,
                        std::chrono::milliseconds timeout);
// The last `max` bytes of a text (error messages quote the end of stderr).
std::string tail(const std::string& text, size_t max = 2000);

// The `code` node kind: {"kind": "code", "language", "source", "input" (a value expression;
// default: the whole state), "timeout_s" (30)}. Its stdout must be a JSON object of channel
// updates (empty: no update); a failure is the node's error, with the end of its stderr.
BuiltNode code_kind(const NodeSpecContext& ctx);

}  // namespace ap::graph::nodes
