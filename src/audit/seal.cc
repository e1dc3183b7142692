#include "audit/seal.h"

#include "store/tx.h"

namespace ap::audit {

boost::asio::awaitable<Result<std::optional<Checkpoint>>> find_seal(store::Pool& pool, TenantId tenant) {
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(pool, tenant,
                                                                 "SELECT checkpoint FROM audit_seals WHERE tenant_id = $1",
                                                                 store::params(tenant.to_string())));
  if (rows.empty()) co_return std::optional<Checkpoint>();
  AP_CO_ASSIGN_OR_RETURN(auto cp, Checkpoint::from_json(rows.get(0, 0)));
  co_return std::optional<Checkpoint>(std::move(cp));
}

boost::asio::awaitable<Result<Checkpoint>> seal_chain(store::Pool& pool, TenantId tenant, const Signer& signer,
                                                      Clock& clock) {
  const std::string id = tenant.to_string();
  AP_CO_ASSIGN_OR_RETURN(auto tx, co_await store::Tx::begin(pool, tenant));
  AP_CO_RETURN_IF_ERROR(co_await tx.exec(
      "INSERT INTO audit_heads (tenant_id, seq, hash) VALUES ($1, 0, decode(repeat('00', 32), 'hex')) "
      "ON CONFLICT (tenant_id) DO NOTHING",
      store::params(id)));
  AP_CO_ASSIGN_OR_RETURN(auto head, co_await tx.exec(
                                        "SELECT h.seq, encode(h.hash, 'hex'), s.checkpoint FROM audit_heads h "
                                        "LEFT JOIN audit_seals s ON s.tenant_id = h.tenant_id "
                                        "WHERE h.tenant_id = $1 FOR UPDATE OF h",
                                        store::params(id)));
  if (!head.is_null(0, 2)) {
    AP_CO_RETURN_IF_ERROR(co_await tx.commit());
    co_return Checkpoint::from_json(head.get(0, 2));
  }
  auto cp = sign_head(signer, id, std::stoll(std::string(head.get(0, 0))), std::string(head.get(0, 1)),
                      format_rfc3339(clock.now()));
  AP_CO_RETURN_IF_ERROR(co_await tx.exec_and_commit(
      "INSERT INTO audit_seals (tenant_id, seq, hash, checkpoint) VALUES ($1, $2::bigint, decode($3, 'hex'), $4)",
      store::params(id, std::to_string(cp.size), cp.head_hex, cp.to_json())));
  co_return cp;
}

}  // namespace ap::audit
