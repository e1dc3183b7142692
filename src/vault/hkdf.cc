#include "vault/hkdf.h"

#include <openssl/core_names.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include <memory>

namespace ap::vault {
namespace {

Result<std::string> run(int mode, std::string_view ikm, std::optional<std::string_view> salt,
                        std::string_view info, size_t length) {
  if (length == 0 || length > 255 * 32) return Error::invalid_argument("HKDF length must be 1..8160 bytes");
  std::unique_ptr<EVP_KDF, decltype(&EVP_KDF_free)> kdf(EVP_KDF_fetch(nullptr, "HKDF", nullptr), EVP_KDF_free);
  if (!kdf) return Error::internal("OpenSSL has no HKDF");
  std::unique_ptr<EVP_KDF_CTX, decltype(&EVP_KDF_CTX_free)> ctx(EVP_KDF_CTX_new(kdf.get()), EVP_KDF_CTX_free);
  if (!ctx) return Error::internal("cannot create an HKDF context");
  static const std::string zeros(32, '\0');  // RFC 5869: no salt = HashLen zero bytes
  std::string_view s = salt ? *salt : std::string_view(zeros);
  char digest[] = "SHA256";
  OSSL_PARAM params[6];
  size_t n = 0;
  params[n++] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
  params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
  params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<char*>(ikm.data()), ikm.size());
  params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, const_cast<char*>(s.data()), s.size());
  if (mode != EVP_KDF_HKDF_MODE_EXTRACT_ONLY)
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, const_cast<char*>(info.data()), info.size());
  params[n] = OSSL_PARAM_construct_end();
  std::string out(length, '\0');
  if (EVP_KDF_derive(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), out.size(), params) != 1)
    return Error::internal("HKDF failed");
  return out;
}

}  // namespace

Result<std::string> hkdf_sha256(std::string_view ikm, std::optional<std::string_view> salt,
                                std::string_view info, size_t length) {
  return run(EVP_KDF_HKDF_MODE_EXTRACT_AND_EXPAND, ikm, salt, info, length);
}

Result<std::string> hkdf_sha256_extract(std::string_view ikm, std::optional<std::string_view> salt) {
  return run(EVP_KDF_HKDF_MODE_EXTRACT_ONLY, ikm, salt, {}, 32);
}

}  // namespace ap::vault
