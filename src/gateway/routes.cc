#include "gateway/routes.h"

namespace ap::gateway {

std::shared_ptr<Router> build_router() {
  auto router = std::make_shared<Router>();
  add_system_routes(*router);
  add_platform_routes(*router);
  add_credential_routes(*router);
  add_audit_routes(*router);
  add_assistant_routes(*router);
  add_thread_routes(*router);
  add_run_routes(*router);
  add_cron_routes(*router);
  add_store_routes(*router);
  add_model_routes(*router);
  add_limit_routes(*router);
  return router;
}

}  // namespace ap::gateway
