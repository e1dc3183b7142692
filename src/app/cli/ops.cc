#include "app/cli/ops.h"

#include <fstream>
#include <iostream>
#include <sstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "audit/chain.h"
#include "common/crypto.h"
#include "common/ids.h"
#include "store/sync_conn.h"
#include "vault/credentials.h"
#include "vault/keyring.h"

namespace ap::app::cli {
namespace {

int fail(const std::string& what, const Error& e) {
  std::cerr << "agentplane " << what << ": " << e.message << "\n";
  return 1;
}

// Verifies `tenant`'s chain entry by entry, streamed with COPY in binary format (hashing
// overlaps the server's sending through the socket's buffers).
// Verifies entries first..last (last 0: to the end) of `tenant`'s chain, the one before `first`
// having `before_hash`.
Result<audit::ChainVerifier> verify_range(store::SyncConn& db, const TenantId& id, int64_t remember, int64_t first,
                                          int64_t last, std::string before_hash) {
  // In seq order straight from the primary key: a sort of a long chain would spill to disk.
  AP_RETURN_IF_ERROR(db.exec_script("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL enable_sort = off"));
  auto run = [&]() -> Result<audit::ChainVerifier> {
    AP_RETURN_IF_ERROR(db.exec("SELECT set_config('app.tenant_id', $1, true)", {id.to_string()}));
    audit::ChainVerifier v(first - 1, std::move(before_hash));
    v.remember(remember);
    bool header = true, damaged = false;
    // Binary COPY: a 19-byte header, then per row: int16 field count, and per field an int32
    // length and the bytes; a trailer of int16 -1. (The id is a parsed UUID: safe to inline.)
    auto be = [](std::string_view b, size_t at, size_t n) {
      uint64_t x = 0;
      for (size_t i = 0; i < n; ++i) x = x << 8 | static_cast<unsigned char>(b[at + i]);
      return x;
    };
    AP_RETURN_IF_ERROR(db.copy_out(
        "COPY (SELECT seq, body, hash FROM agentplane.audit_events WHERE tenant_id = '" + id.to_string() +
            "' AND seq >= " + std::to_string(first) + (last ? " AND seq <= " + std::to_string(last) : std::string()) +
            " ORDER BY seq) TO STDOUT WITH (FORMAT binary)",
        [&](std::string_view row) {
          if (header) {
            if (row.size() < 19) return !(damaged = true);
            size_t ext = be(row, 15, 4);
            row.remove_prefix(19 + ext);
            header = false;
            if (row.empty()) return true;
          }
          if (row.size() < 2 || be(row, 0, 2) == 0xffff) return true;  // trailer
          size_t at = 2;
          std::string_view fields[3];
          for (auto& f : fields) {
            if (at + 4 > row.size()) return !(damaged = true);
            size_t len = be(row, at, 4);
            at += 4;
            if (at + len > row.size()) return !(damaged = true);
            f = row.substr(at, len);
            at += len;
          }
          if (fields[0].size() != 8) return !(damaged = true);
          return v.add(static_cast<int64_t>(be(fields[0], 0, 8)), fields[1], fields[2]);
        }));
    if (damaged) return Error::internal("unreadable audit rows");
    return v;
  };
  auto r = run();
  (void)db.exec_script("COMMIT");
  return r;
}

// A long chain is verified in two halves at once, on two connections (the server streams and
// this process hashes on both cores).
Result<audit::ChainVerifier> verify_tenant(store::SyncConn& db, const std::string& database_url,
                                           const std::string& tenant, int64_t remember) {
  auto id = TenantId::parse(tenant);
  if (!id) return Error::invalid_argument("not a tenant id: " + tenant);
  const std::string zero(32, '\0');
  AP_RETURN_IF_ERROR(db.exec_script("BEGIN"));
  auto count = db.exec("SELECT set_config('app.tenant_id', $1, true), (SELECT max(seq) FROM "
                       "agentplane.audit_events WHERE tenant_id = $1::uuid)",
                       {id->to_string()});
  (void)db.exec_script("COMMIT");
  if (!count) return count.error();
  int64_t n = count->is_null(0, 1) ? 0 : std::stoll(std::string(count->get(0, 1)));
  if (n < 200000) return verify_range(db, *id, remember, 1, 0, zero);
  int64_t mid = n / 2;
  AP_ASSIGN_OR_RETURN(auto other, store::SyncConn::connect(database_url));
  // The second half starts from the stored hash of the entry before it.
  AP_RETURN_IF_ERROR(other->exec_script("BEGIN"));
  auto prev = other->exec_binary("SELECT set_config('app.tenant_id', $1, true), (SELECT hash FROM "
                                 "agentplane.audit_events WHERE tenant_id = $1::uuid AND seq = $2::bigint)",
                                 {id->to_string(), std::to_string(mid)});
  (void)other->exec_script("COMMIT");
  if (!prev) return prev.error();
  if (prev->is_null(0, 1)) return verify_range(db, *id, remember, 1, 0, zero);  // a gap: found in one pass
  std::string mid_hash(prev->get(0, 1));
  Result<audit::ChainVerifier> second = Error::internal("not run");
  std::thread t([&] { second = verify_range(*other, *id, remember, mid + 1, 0, mid_hash); });
  auto first = verify_range(db, *id, remember, 1, mid, zero);
  t.join();
  if (!first) return first.error();
  if (first->bad_entry() || first->size() != mid) return first;  // the first half's problem comes first
  if (!second) return second.error();
  if (first->remembered() && !second->remembered()) {
    audit::ChainVerifier merged = std::move(*second);
    merged.set_remembered(*first->remembered());
    return merged;
  }
  return second;
}

}  // namespace

int vault_rotate(const std::string& key_file) {
  auto v = vault::Keyring::rotate_file(key_file);
  if (!v) return fail("vault rotate", v.error());
  std::cout << "master key version " << *v << " added and current. Restart the servers, then run "
            << "`agentplane vault rewrap` to re-encrypt older credentials.\n";
  return 0;
}

int vault_retire(const std::string& key_file, const std::string& database_url, int version) {
  auto keys = vault::Keyring::load_file(key_file);
  if (!keys) return fail("vault retire", keys.error());
  if (version == keys->current()) return fail("vault retire", Error::failed_precondition("cannot retire the current version: rotate first"));
  auto db = store::SyncConn::connect(database_url);
  if (!db) return fail("vault retire", db.error());
  auto n = vault::count_under_version(**db, version);
  if (!n) return fail("vault retire", n.error());
  if (*n > 0)
    return fail("vault retire", Error::failed_precondition(std::to_string(*n) + " credential(s) still use version " +
                                                          std::to_string(version) + ": run `agentplane vault rewrap` first"));
  if (auto s = vault::Keyring::retire_in_file(key_file, version); !s) return fail("vault retire", s.error());
  std::cout << "master key version " << version << " retired\n";
  return 0;
}

int vault_rewrap(const std::string& key_file, const std::string& database_url, const std::string& tenant) {
  auto keys = vault::Keyring::load_file(key_file);
  if (!keys) return fail("vault rewrap", keys.error());
  auto db = store::SyncConn::connect(database_url);
  if (!db) return fail("vault rewrap", db.error());
  auto n = vault::rewrap_all(**db, *keys, tenant);
  if (!n) return fail("vault rewrap", n.error());
  std::cout << n->rewrapped << " credential(s) re-encrypted under master key version " << keys->current() << "\n";
  for (const auto& u : n->unreadable) std::cerr << "agentplane vault rewrap: cannot decrypt " << u << ": left as it was\n";
  return n->unreadable.empty() ? 0 : 1;
}

int tenant_purge(const std::string& database_url) {
  auto db = store::SyncConn::connect(database_url);
  if (!db) return fail("tenant purge", db.error());
  auto r = (*db)->exec("SELECT * FROM agentplane.admin_purge_tenants()", {});
  if (!r) return fail("tenant purge", r.error());
  std::cout << nlohmann::json{{"swept_rows", std::stoll(std::string(r->get(0, 0)))},
                              {"purged_tenants", std::stoi(std::string(r->get(0, 1)))},
                              {"purged_events", std::stoll(std::string(r->get(0, 2)))}}
                   .dump()
            << "\n";
  return 0;
}

int audit_verify(const std::string& database_url, const std::string& tenant, const std::string& checkpoint_file,
                 const std::string& key_file) {
  auto db = store::SyncConn::connect(database_url);
  if (!db) return fail("audit verify", db.error());
  std::optional<audit::Checkpoint> cp;
  if (!checkpoint_file.empty()) {
    std::ifstream in(checkpoint_file);
    std::stringstream text;
    text << in.rdbuf();
    auto parsed = audit::Checkpoint::from_json(text.str());
    if (!in || !parsed) return fail("audit verify", parsed ? Error::not_found("cannot read " + checkpoint_file) : parsed.error());
    cp = *parsed;
    if (!tenant.empty() && tenant != cp->tenant)
      return fail("audit verify", Error::invalid_argument("the checkpoint is for tenant " + cp->tenant));
    if (!key_file.empty()) {
      auto keys = vault::Keyring::load_file(key_file);
      if (!keys) return fail("audit verify", keys.error());
      auto seed = keys->audit_seed(cp->key_version);
      if (!seed) return fail("audit verify", seed.error());
      auto signer = audit::Signer::from_seed(cp->key_version, *seed);
      auto sig = base64_decode(cp->signature);
      if (!signer || !sig || !audit::verify_signature(signer->public_key(), cp->signed_bytes(), *sig))
        return fail("audit verify", Error::failed_precondition("the checkpoint's signature is not valid"));
    } else {
      std::cerr << "agentplane audit verify: no --master-key-file: the checkpoint's signature is not checked\n";
    }
  }
  std::vector<std::string> tenants;
  if (!tenant.empty()) {
    tenants.push_back(tenant);
  } else if (cp) {
    tenants.push_back(cp->tenant);
  } else {
    auto rows = (*db)->exec("SELECT id FROM agentplane.admin_list_tenants(NULL, 1000000)");
    if (!rows) return fail("audit verify", rows.error());
    tenants.push_back(TenantId().to_string());  // the platform's own chain (failed sign-ins)
    for (int i = 0; i < rows->size(); ++i) tenants.emplace_back(rows->get(i, 0));
  }
  bool all_good = true;
  for (const auto& t : tenants) {
    auto v = verify_tenant(**db, database_url, t, cp ? cp->size : -1);
    if (!v) return fail("audit verify", v.error());
    Status st = ok_status();
    if (v->bad_entry()) {
      st = Error::failed_precondition(v->problem());
    } else if (cp) {
      st = audit::check_against(*cp, *v);
    }
    if (st) {
      std::cout << "tenant " << t << ": " << v->size() << " entries, chain intact, head " << hex_encode(v->head()) << "\n";
    } else {
      all_good = false;
      std::cout << "tenant " << t << ": BAD: " << st.error().message << "\n";
    }
  }
  return all_good ? 0 : 1;
}

}  // namespace ap::app::cli
