// The LangGraph store: JSON items under a namespace (a list of labels) and a key, per tenant
// under row-level security, with an optional TTL (minutes). Search by namespace prefix and an
// exact-match filter on value keys; semantic `query` needs an index, which is not built yet (a
// query then matches every item under the prefix, as LangGraph's servers without an index do).
#pragma once

#include "control/common.h"

namespace ap::control {

class StoreItems {
 public:
  // PUT /store/items: {namespace, key, value, ttl?}.
  Task<void> put(Scope s, Json body);
  // GET /store/items?namespace=a.b&key=k: the item, or null.
  Task<Json> get(Scope s, std::string dotted_namespace, std::string key, bool refresh_ttl);
  // DELETE /store/items: {namespace, key}.
  Task<void> remove(Scope s, Json body);
  // POST /store/items/search: {namespace_prefix, filter?, limit, offset, query?}.
  Task<Json> search(Scope s, Json body);
  // POST /store/namespaces: {prefix?, suffix?, max_depth?, limit, offset}.
  Task<Json> namespaces(Scope s, Json body);
};

}  // namespace ap::control
