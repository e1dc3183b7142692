// A sandbox's way out, when its spec allows egress: an HTTP proxy (CONNECT tunnels and plain
// HTTP requests) that runs in the server and serves a listening socket made inside the sandbox's
// network namespace (127.0.0.1:3128 there; the sandbox still has no interface but `lo`). Each
// connection's destination is checked (`Spec::egress_check`, e.g. the operator's allowlist) on
// every address its host resolves to, and the connection goes to the very address checked.
// Every destination is recorded for the run's result (and its audit event).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <memory>
#include <vector>

#include "exec/sandbox/sandbox.h"

namespace ap::sandbox {

class EgressProxy {
 public:
  // Serves `listener_fd` (a listening TCP socket; taken over) on `ex` until stop().
  static std::shared_ptr<EgressProxy> start(boost::asio::any_io_executor ex, int listener_fd, EgressCheck check);
  virtual ~EgressProxy() = default;
  // Closes the listener and every connection; what was reached (or refused) goes into `into`.
  virtual void stop(RunResult& into) = 0;
};

}  // namespace ap::sandbox
