// The audit context of a request (tenant, actor, request id, the shard's pool). Include only
// from handler .cc files.
#pragma once

#include "audit/audit_log.h"
#include "gateway/router.h"

namespace ap::gateway {

inline audit::Context audit_context(const RequestContext& ctx) {
  return {ctx.tenant(), ctx.principal.actor(), ctx.request_id, &ctx.pool};
}

}  // namespace ap::gateway
