#include "app/cli/ops.h"

#include <fstream>
#include <iostream>
#include <sstream>

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

// Verifies `tenant`'s chain entry by entry (streamed with a cursor); prints a line; true if good.
Result<audit::ChainVerifier> verify_tenant(store::SyncConn& db, const std::string& tenant, int64_t remember) {
  AP_RETURN_IF_ERROR(db.exec_script("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"));
  auto run = [&]() -> Result<audit::ChainVerifier> {
    AP_RETURN_IF_ERROR(db.exec("SELECT set_config('app.tenant_id', $1, true)", {tenant}));
    AP_RETURN_IF_ERROR(db.exec("DECLARE chain NO SCROLL CURSOR FOR SELECT seq, body, hash FROM "
                               "agentplane.audit_events WHERE tenant_id = $1 ORDER BY seq",
                               {tenant}));
    audit::ChainVerifier v;
    v.remember(remember);
    for (;;) {
      AP_ASSIGN_OR_RETURN(auto rows, db.exec("FETCH 10000 FROM chain"));
      if (rows.empty()) break;
      for (int i = 0; i < rows.size(); ++i) {
        auto body = hex_decode(rows.get(i, 1).substr(2));
        auto hash = hex_decode(rows.get(i, 2).substr(2));
        if (!body || !hash) return Error::internal("unreadable audit row");
        if (!v.add(std::stoll(std::string(rows.get(i, 0))), *body, *hash)) return v;
      }
    }
    return v;
  };
  auto r = run();
  (void)db.exec_script("COMMIT");
  return r;
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
    auto v = verify_tenant(**db, t, cp ? cp->size : -1);
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
