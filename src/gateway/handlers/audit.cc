// Audit API: the tenant's chain (full replay and decision log), its signed head, and the
// public keys that verify it.
#include "audit/chain.h"
#include "common/clock.h"
#include "common/crypto.h"
#include "gateway/handlers/audit_context.h"
#include "gateway/handlers/json_body.h"
#include "gateway/routes.h"
#include "store/tx.h"

namespace ap::gateway {
namespace {

using Task = boost::asio::awaitable<Result<Response>>;

// ?after=<seq>&limit=1..1000&kind=<kind>&since=<RFC 3339 time>
Task list_entries(RequestContext& ctx, bool decisions) {
  int64_t after = 0, limit = 100;
  try {
    if (auto a = ctx.request.query_param("after")) after = std::stoll(*a);
    if (auto l = ctx.request.query_param("limit")) limit = std::stoll(*l);
  } catch (const std::exception&) {
    co_return Error::invalid_argument("after and limit must be integers");
  }
  if (after < 0 || limit < 1 || limit > 1000) co_return Error::invalid_argument("after must be >= 0 and limit 1..1000");
  auto kind = ctx.request.query_param("kind");
  auto since = ctx.request.query_param("since");
  std::string sql =
      "SELECT seq, kind, level, convert_from(body, 'UTF8'), encode(hash, 'hex') FROM audit_events "
      "WHERE tenant_id = $1 AND seq > $2::bigint";
  std::vector<store::Param> params = store::params(ctx.tenant().to_string(), std::to_string(after));
  if (decisions) sql += " AND level = 1";
  if (kind) {
    params.emplace_back(*kind);
    sql += " AND kind = $" + std::to_string(params.size());
  }
  if (since) {
    params.emplace_back(*since);
    sql += " AND at >= $" + std::to_string(params.size()) + "::timestamptz";
  }
  params.emplace_back(std::to_string(limit));
  sql += " ORDER BY seq LIMIT $" + std::to_string(params.size()) + "::bigint";
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(ctx.pool, ctx.tenant(), sql, std::move(params)));
  json items = json::array();
  for (int i = 0; i < rows.size(); ++i)
    items.push_back({{"seq", std::stoll(std::string(rows.get(i, 0)))},
                     {"kind", rows.get(i, 1)},
                     {"level", rows.get(i, 2) == "1" ? "decision" : "replay"},
                     {"entry", json::parse(rows.get(i, 3), nullptr, false)},
                     {"hash", rows.get(i, 4)}});
  json out{{"items", items}, {"next_after", nullptr}};
  if (rows.size() == limit) out["next_after"] = items.back()["seq"];
  co_return Response::json(200, dump(out));
}

Task list_all(RequestContext& ctx) { co_return co_await list_entries(ctx, false); }
Task list_decisions(RequestContext& ctx) { co_return co_await list_entries(ctx, true); }

Task signed_head(RequestContext& ctx) {
  if (!ctx.services.signers || ctx.services.signers->empty())
    co_return Error::unavailable("audit checkpoints need a master key: start the server with one");
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(
                                        ctx.pool, ctx.tenant(),
                                        "SELECT seq, encode(hash, 'hex') FROM audit_heads WHERE tenant_id = $1",
                                        store::params(ctx.tenant().to_string())));
  auto cp = audit::sign_head(ctx.services.signers->back(), ctx.tenant().to_string(),
                            rows.empty() ? 0 : std::stoll(std::string(rows.get(0, 0))),
                            rows.empty() ? std::string(64, '0') : std::string(rows.get(0, 1)),
                            format_rfc3339(Clock::system().now()));
  co_return Response::json(200, cp.to_json());
}

Task public_keys(RequestContext& ctx) {
  json keys = json::array();
  if (ctx.services.signers)
    for (const auto& s : *ctx.services.signers)
      keys.push_back({{"key_version", s.version()}, {"algorithm", "Ed25519"}, {"public_key", base64_encode(s.public_key())}});
  co_return Response::json(200, dump(json{{"keys", keys}}));
}

}  // namespace

void add_audit_routes(Router& r) {
  r.add({"GET", "/v1/audit", AuthMode::kTenant, auth::kScopeRead, list_all});
  r.add({"GET", "/v1/audit/decisions", AuthMode::kTenant, auth::kScopeRead, list_decisions});
  r.add({"GET", "/v1/audit/checkpoint", AuthMode::kTenant, auth::kScopeRead, signed_head});
  r.add({"GET", "/v1/audit/public-keys", AuthMode::kNone, 0, public_keys});
}

}  // namespace ap::gateway
