// Sealing a deleted tenant's chain (docs/audit_format.md, "Deleted tenants"): the chain's final
// head, signed, is stored beside it, and the database refuses any later append. The chain and
// its seal are kept for the retention period, so that the tenant (who kept earlier checkpoints)
// or an auditor can still verify its whole history after the data is gone.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <optional>

#include "audit/chain.h"
#include "common/clock.h"
#include "common/ids.h"
#include "common/result.h"

namespace ap::store {
class Pool;
}

namespace ap::audit {

// Under the chain head's row lock (which appends take too), signs the head and stores the seal.
// Idempotent: a chain already sealed returns its seal.
boost::asio::awaitable<Result<Checkpoint>> seal_chain(store::Pool& pool, TenantId tenant, const Signer& signer,
                                                      Clock& clock = Clock::system());
// The seal of a deleted tenant's chain, if it has one.
boost::asio::awaitable<Result<std::optional<Checkpoint>>> find_seal(store::Pool& pool, TenantId tenant);

}  // namespace ap::audit
