// What the agent node kinds (llm, tools, code) need from the platform while a run executes: the
// tenant's models (route, key, limits, usage record), outbound HTTP for http tools (egress
// policy, a vault credential injected) and the sandbox for code. The worker implements it per run (exec/worker/
// run_services.cc) and hands it to the engine as the run's scope; tests implement it with a
// scripted model. Methods block the calling node thread (nodes run on the worker's runner
// threads, never on an I/O thread) and may be called from parallel tasks at once.
#pragma once

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "common/result.h"
#include "exec/sandbox/sandbox.h"
#include "graph/graph.h"
#include "llm/chat.h"

namespace ap::graph::nodes {

// An http tool's request. The credential's value is added by the platform as
// `<credential_header>: <credential_prefix><value>`; the node never sees it.
struct HttpCall {
  std::string method = "GET";
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string credential;  // a vault credential name; empty: none
  std::string credential_header = "Authorization";
  std::string credential_prefix = "Bearer ";
  std::chrono::milliseconds timeout{30000};
  size_t max_response_bytes = 1u << 20;
};

struct HttpReply {
  int status = 0;
  std::string content_type;
  std::string body;
};

// What a model route is: the `events` stream mode's metadata for its calls.
struct ModelInfo {
  std::string provider;  // openai | anthropic | scripted
  std::string upstream_model;
};

class RunServices : public RunScope {
 public:
  // What the tenant's model `model` (a model route) is. NotFound for an unknown model.
  virtual Result<ModelInfo> model_info(const std::string& model) = 0;
  // Calls the tenant's model named `model` (a model route). The route's upstream model replaces
  // call.model. ResourceExhausted when a rate limit or budget refuses; NotFound for an unknown
  // model; the provider's errors otherwise.
  virtual Result<llm::ChatResult> chat(const std::string& model, llm::ChatCall call, const llm::OnDelta& on_delta) = 0;
  // An HTTP request for a tool. PermissionDenied when the egress policy refuses the address.
  virtual Result<HttpReply> http(HttpCall call) = 0;
  // Runs code in the tenant's sandbox, under the tenant's sandbox policy (which caps the spec's
  // limits and decides about the network). What the code did (exit 1, a limit hit) is the
  // RunResult; errors are the platform's (no sandbox here, the CPU-seconds quota used up).
  virtual Result<sandbox::RunResult> code(sandbox::Spec spec) = 0;
};

}  // namespace ap::graph::nodes
