// The platform side of the agent node kinds for one run on this worker: model calls through the
// tenant's model routes (limits admitted and settled, the provider key taken from the vault,
// one usage record per call with the thread and run), and outbound HTTP for http tools (the
// egress policy, a vault credential injected as a header), and code in the sandbox (the tenant's
// sandbox policy and CPU-seconds quota, a "code.executed" audit event). Node threads call it and block; the
// work runs on the worker's I/O thread. A cancel of the run aborts a call in flight.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <memory>
#include <mutex>

#include "common/ids.h"
#include "graph/nodes/run_services.h"

namespace boost::asio {
class io_context;
}
namespace ap::audit {
class AuditLog;
}
namespace ap::llm {
struct ModelServices;
}
namespace ap::net {
class HttpClient;
}
namespace ap::store {
class Pool;
}
namespace ap::vault {
class CredentialStore;
}

namespace ap::exec {

// Process-wide services the agent nodes use (null members: that part is not configured).
struct ModelAccess {
  llm::ModelServices* models = nullptr;  // also the limits (sandbox policy, CPU-seconds quota)
  vault::CredentialStore* credentials = nullptr;
  sandbox::Sandbox* sandbox = nullptr;   // code nodes and the code tool
  audit::AuditLog* audit = nullptr;      // "code.executed" events
};

class WorkerRunServices final : public graph::nodes::RunServices {
 public:
  struct Where {
    boost::asio::any_io_executor ex;  // the worker's I/O thread
    const boost::asio::io_context* io = nullptr;  // its context (stopped: the thread is gone)
    store::Pool* pool = nullptr;      // on `ex`
    net::HttpClient* http = nullptr;  // on `ex`
  };
  // `stop`: the run's stop flag; `worker_stopping`: the worker's. Either aborts a call.
  WorkerRunServices(ModelAccess access, Where where, TenantId tenant, Uuid thread, Uuid run,
                    std::shared_ptr<std::atomic<int>> stop, const std::atomic<bool>* worker_stopping);

  Result<graph::nodes::ModelInfo> model_info(const std::string& model) override;
  Result<llm::ChatResult> chat(const std::string& model, llm::ChatCall call, const llm::OnDelta& on_delta) override;
  Result<graph::nodes::HttpReply> http(graph::nodes::HttpCall call) override;
  Result<sandbox::RunResult> code(sandbox::Spec spec) override;

  // The run's model calls so far, for its cost event.
  struct Totals {
    int64_t calls = 0, prompt_tokens = 0, completion_tokens = 0, cost_micro_usd = 0, unpriced_calls = 0;
    int64_t sandbox_runs = 0, sandbox_cpu_ms = 0;
  };
  Totals totals() const;

  struct Call;  // one model call's state (run_services.cc)

 private:
  bool stopping() const;
  ModelAccess access_;
  Where where_;
  TenantId tenant_;
  Uuid thread_, run_;
  std::shared_ptr<std::atomic<int>> stop_;
  const std::atomic<bool>* worker_stopping_;
  mutable std::mutex mu_;
  Totals totals_;
  int64_t seq_ = 0;
};

}  // namespace ap::exec
