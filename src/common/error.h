// Error values used at every component boundary (abseil's code vocabulary).
// Thread-safe: plain values.
#pragma once

#include <string>
#include <string_view>

namespace ap {

enum class Code {
  kOk = 0,
  kInvalidArgument,
  kUnauthenticated,
  kPermissionDenied,
  kNotFound,
  kAlreadyExists,
  kFailedPrecondition,
  kAborted,
  kResourceExhausted,
  kDeadlineExceeded,
  kUnavailable,
  kCancelled,
  kUnimplemented,
  kInternal,
  kPayloadTooLarge,  // request body over the configured cap (HTTP 413)
};

// The stable lower-case name of a code ("not_found"), for logs and error bodies.
std::string_view code_name(Code code);

struct Error {
  Code code = Code::kInternal;
  // Human-readable, safe to show to the caller: never holds a secret.
  std::string message;

  static Error invalid_argument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
  static Error unauthenticated(std::string m) { return {Code::kUnauthenticated, std::move(m)}; }
  static Error permission_denied(std::string m) { return {Code::kPermissionDenied, std::move(m)}; }
  static Error not_found(std::string m) { return {Code::kNotFound, std::move(m)}; }
  static Error already_exists(std::string m) { return {Code::kAlreadyExists, std::move(m)}; }
  static Error failed_precondition(std::string m) {
    return {Code::kFailedPrecondition, std::move(m)};
  }
  static Error aborted(std::string m) { return {Code::kAborted, std::move(m)}; }
  static Error resource_exhausted(std::string m) {
    return {Code::kResourceExhausted, std::move(m)};
  }
  static Error deadline_exceeded(std::string m) { return {Code::kDeadlineExceeded, std::move(m)}; }
  static Error unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
  static Error cancelled(std::string m) { return {Code::kCancelled, std::move(m)}; }
  static Error unimplemented(std::string m) { return {Code::kUnimplemented, std::move(m)}; }
  static Error internal(std::string m) { return {Code::kInternal, std::move(m)}; }
  static Error payload_too_large(std::string m) { return {Code::kPayloadTooLarge, std::move(m)}; }

  // "not_found: thread 42 does not exist"
  std::string to_string() const;
};

}  // namespace ap
