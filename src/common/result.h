// Result<T>: a value or an Error (tl::expected underneath); Status = Result<void>.
// Return an Error directly from a function returning Result<T>. Thread-safe: plain values.
#pragma once

#include <tl/expected.hpp>

#include "common/error.h"

namespace ap {

template <class T>
class [[nodiscard]] Result : public tl::expected<T, Error> {
 public:
  using Base = tl::expected<T, Error>;
  using Base::Base;
  Result(Error e) : Base(tl::unexpected<Error>(std::move(e))) {}  // NOLINT: implicit by design
  Result(Base b) : Base(std::move(b)) {}                           // NOLINT
};

using Status = Result<void>;
inline Status ok_status() { return {}; }

}  // namespace ap

#define AP_CONCAT_INNER(a, b) a##b
#define AP_CONCAT(a, b) AP_CONCAT_INNER(a, b)

// Returns the error of `expr` (a Result) from the enclosing function, if any.
#define AP_RETURN_IF_ERROR(expr)                                  \
  do {                                                            \
    auto _ap_status = (expr);                                     \
    if (!_ap_status) return std::move(_ap_status).error();        \
  } while (0)

// `AP_ASSIGN_OR_RETURN(auto x, f())`: binds the value of f() or returns its error.
#define AP_ASSIGN_OR_RETURN(lhs, expr)                             \
  auto AP_CONCAT(_ap_r, __LINE__) = (expr);                        \
  if (!AP_CONCAT(_ap_r, __LINE__)) return std::move(AP_CONCAT(_ap_r, __LINE__)).error(); \
  lhs = std::move(*AP_CONCAT(_ap_r, __LINE__))

// Coroutine twins: `expr` is usually `co_await something()`.
#define AP_CO_RETURN_IF_ERROR(expr)                               \
  do {                                                            \
    auto _ap_status = (expr);                                     \
    if (!_ap_status) co_return std::move(_ap_status).error();     \
  } while (0)

#define AP_CO_ASSIGN_OR_RETURN(lhs, expr)                          \
  auto AP_CONCAT(_ap_r, __LINE__) = (expr);                        \
  if (!AP_CONCAT(_ap_r, __LINE__)) co_return std::move(AP_CONCAT(_ap_r, __LINE__)).error(); \
  lhs = std::move(*AP_CONCAT(_ap_r, __LINE__))
