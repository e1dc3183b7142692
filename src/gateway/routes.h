// Every route of the HTTP API, in one table (see routes.cc). Thread-safe once built.
#pragma once

#include <memory>

#include "gateway/router.h"

namespace ap::gateway {

std::shared_ptr<Router> build_router();

// Registration per handler file.
void add_system_routes(Router& router);
void add_platform_routes(Router& router);
void add_credential_routes(Router& router);
void add_audit_routes(Router& router);
void add_assistant_routes(Router& router);
void add_thread_routes(Router& router);
void add_run_routes(Router& router);
void add_cron_routes(Router& router);
void add_store_routes(Router& router);
void add_model_routes(Router& router);
void add_limit_routes(Router& router);

}  // namespace ap::gateway
