#include "auth/jwt.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "common/crypto.h"

namespace ap::auth {
namespace {

using Json = nlohmann::json;

// JWS uses base64url without padding.
std::optional<std::string> b64url(std::string_view s) {
  if (s.find('=') != std::string_view::npos) return std::nullopt;
  std::string padded(s);
  while (padded.size() % 4) padded += '=';
  return base64url_decode(padded);
}

std::shared_ptr<evp_pkey_st> own(EVP_PKEY* k) { return std::shared_ptr<evp_pkey_st>(k, EVP_PKEY_free); }

std::shared_ptr<evp_pkey_st> rsa_key(const std::string& n, const std::string& e) {
  std::unique_ptr<BIGNUM, decltype(&BN_free)> bn_n(BN_bin2bn(reinterpret_cast<const unsigned char*>(n.data()),
                                                             static_cast<int>(n.size()), nullptr), BN_free);
  std::unique_ptr<BIGNUM, decltype(&BN_free)> bn_e(BN_bin2bn(reinterpret_cast<const unsigned char*>(e.data()),
                                                             static_cast<int>(e.size()), nullptr), BN_free);
  std::unique_ptr<OSSL_PARAM_BLD, decltype(&OSSL_PARAM_BLD_free)> bld(OSSL_PARAM_BLD_new(), OSSL_PARAM_BLD_free);
  if (!bn_n || !bn_e || !bld || BN_num_bits(bn_n.get()) < 2048 ||
      !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) ||
      !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()))
    return nullptr;
  std::unique_ptr<OSSL_PARAM, decltype(&OSSL_PARAM_free)> params(OSSL_PARAM_BLD_to_param(bld.get()), OSSL_PARAM_free);
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr),
                                                                  EVP_PKEY_CTX_free);
  EVP_PKEY* key = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params.get()) != 1)
    return nullptr;
  return own(key);
}

std::shared_ptr<evp_pkey_st> ec_p256_key(const std::string& x, const std::string& y) {
  if (x.size() != 32 || y.size() != 32) return nullptr;
  std::string point = "\x04" + x + y;
  char group[] = "P-256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()),
      OSSL_PARAM_construct_end()};
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr),
                                                                  EVP_PKEY_CTX_free);
  EVP_PKEY* key = nullptr;
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params) != 1)
    return nullptr;
  return own(key);
}

// JWS ES256 signatures are r || s (32 bytes each); OpenSSL wants DER.
std::optional<std::string> es256_der(std::string_view raw) {
  if (raw.size() != 64) return std::nullopt;
  std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> sig(ECDSA_SIG_new(), ECDSA_SIG_free);
  BIGNUM* r = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()), 32, nullptr);
  BIGNUM* s = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()) + 32, 32, nullptr);
  if (!sig || !r || !s || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return std::nullopt;
  }
  int n = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (n <= 0) return std::nullopt;
  std::string der(static_cast<size_t>(n), '\0');
  auto* p = reinterpret_cast<unsigned char*>(der.data());
  i2d_ECDSA_SIG(sig.get(), &p);
  return der;
}

bool verify_sig(EVP_PKEY* key, std::string_view signed_part, std::string_view sig) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  return ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) == 1 &&
         EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                          reinterpret_cast<const unsigned char*>(signed_part.data()), signed_part.size()) == 1;
}

Error refused(const std::string& why) { return Error::unauthenticated("invalid token: " + why); }

struct Parts {
  std::string_view header_b64, payload_b64, sig_b64;
  Json header, payload;
};

std::optional<Parts> split(std::string_view token) {
  if (token.size() > 16 * 1024) return std::nullopt;
  auto d1 = token.find('.');
  auto d2 = d1 == std::string_view::npos ? d1 : token.find('.', d1 + 1);
  if (d2 == std::string_view::npos || token.find('.', d2 + 1) != std::string_view::npos) return std::nullopt;
  Parts p{token.substr(0, d1), token.substr(d1 + 1, d2 - d1 - 1), token.substr(d2 + 1), {}, {}};
  auto h = b64url(p.header_b64), b = b64url(p.payload_b64);
  if (!h || !b) return std::nullopt;
  p.header = Json::parse(*h, nullptr, false);
  p.payload = Json::parse(*b, nullptr, false);
  if (!p.header.is_object() || !p.payload.is_object()) return std::nullopt;
  return p;
}

std::optional<int64_t> numeric_date(const Json& payload, const char* claim) {
  auto it = payload.find(claim);
  if (it == payload.end()) return std::nullopt;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_number_float()) return static_cast<int64_t>(it->get<double>());
  return INT64_MIN;  // present but not a number: refused below
}

}  // namespace

Result<Jwks> Jwks::parse(std::string_view json) {
  Json doc = Json::parse(json.begin(), json.end(), nullptr, false);
  if (!doc.is_object() || !doc.contains("keys") || !doc["keys"].is_array())
    return Error::invalid_argument("not a JSON Web Key Set (no \"keys\" array)");
  Jwks set;
  for (const auto& k : doc["keys"]) {
    if (!k.is_object()) continue;
    if (k.value("use", "sig") != "sig") continue;
    Key key{k.value("kid", ""), k.value("kty", ""), k.value("alg", ""), nullptr};
    if (key.kty == "RSA" && k.contains("n") && k.contains("e") && k["n"].is_string() && k["e"].is_string()) {
      auto n = b64url(k["n"].get<std::string>()), e = b64url(k["e"].get<std::string>());
      if (n && e) key.pkey = rsa_key(*n, *e);
    } else if (key.kty == "EC" && k.value("crv", "") == "P-256" && k.contains("x") && k.contains("y") &&
               k["x"].is_string() && k["y"].is_string()) {
      auto x = b64url(k["x"].get<std::string>()), y = b64url(k["y"].get<std::string>());
      if (x && y) key.pkey = ec_p256_key(*x, *y);
    }
    if (key.pkey) set.keys_.push_back(std::move(key));
  }
  return set;
}

const Jwks::Key* Jwks::find(std::string_view kid) const {
  for (const auto& k : keys_)
    if (k.kid == kid) return &k;
  return nullptr;
}

std::optional<UnverifiedJwt> peek_jwt(std::string_view token) {
  auto p = split(token);
  if (!p) return std::nullopt;
  UnverifiedJwt u;
  if (p->header.contains("kid") && p->header["kid"].is_string()) u.kid = p->header["kid"].get<std::string>();
  if (p->header.contains("alg") && p->header["alg"].is_string()) u.alg = p->header["alg"].get<std::string>();
  if (p->payload.contains("iss") && p->payload["iss"].is_string()) u.iss = p->payload["iss"].get<std::string>();
  return u;
}

Result<nlohmann::json> verify_jwt(std::string_view token, const IssuerPolicy& policy, const Jwks& keys,
                                  std::chrono::system_clock::time_point now) {
  auto p = split(token);
  if (!p) return refused("malformed");
  // The header decides nothing but which allowed algorithm and which configured key.
  if (!p->header.contains("alg") || !p->header["alg"].is_string()) return refused("no alg");
  std::string alg = p->header["alg"].get<std::string>();
  if (std::find(policy.algorithms.begin(), policy.algorithms.end(), alg) == policy.algorithms.end())
    return refused("algorithm " + alg.substr(0, 16) + " is not allowed for this issuer");
  if (p->header.contains("crit")) return refused("unsupported critical header");
  if (!p->header.contains("kid") || !p->header["kid"].is_string()) return refused("no kid");
  const Jwks::Key* key = keys.find(p->header["kid"].get<std::string>());
  if (!key) return refused("unknown key id");
  bool rsa = alg == "RS256", ec = alg == "ES256";
  if ((rsa && key->kty != "RSA") || (ec && key->kty != "EC") || (!rsa && !ec) ||
      (!key->alg.empty() && key->alg != alg))
    return refused("the key does not match the algorithm");
  auto sig = b64url(p->sig_b64);
  if (!sig) return refused("malformed signature");
  std::string signed_part = std::string(p->header_b64) + "." + std::string(p->payload_b64);
  std::optional<std::string> der = rsa ? std::optional<std::string>(*sig) : es256_der(*sig);
  if (!der || !verify_sig(key->pkey.get(), signed_part, *der)) return refused("bad signature");

  const Json& c = p->payload;
  if (c.value("iss", "") != policy.issuer) return refused("wrong issuer");
  bool aud_ok = false;
  if (auto a = c.find("aud"); a != c.end()) {
    auto matches = [&](const Json& v) {
      return v.is_string() && std::find(policy.audiences.begin(), policy.audiences.end(), v.get<std::string>()) !=
                                  policy.audiences.end();
    };
    aud_ok = a->is_array() ? std::any_of(a->begin(), a->end(), matches) : matches(*a);
  }
  if (!aud_ok) return refused("wrong audience");
  int64_t t = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  int64_t leeway = std::min<int64_t>(policy.leeway.count(), 60);
  auto exp = numeric_date(c, "exp");
  if (!exp || *exp == INT64_MIN) return refused("no expiry");
  if (t > *exp + leeway) return refused("expired");
  if (auto nbf = numeric_date(c, "nbf"); nbf && (*nbf == INT64_MIN || t + leeway < *nbf)) return refused("not yet valid");
  return c;
}

}  // namespace ap::auth
