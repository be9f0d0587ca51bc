//! `ServiceAccount` tokens: signed `JWTs` (`HS256` with a per-server random key) carrying the
//! claims a real API server puts into a bound token.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use serde::{Deserialize, Serialize};

/// The issuer (and default audience) of every token this server signs.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The `kubernetes.io` claim block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    /// Namespace of the `ServiceAccount`.
    pub namespace: String,
    /// The `ServiceAccount` the token belongs to.
    pub serviceaccount: ObjectRef,
}

/// Name and uid of an object a token refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// Object name.
    pub name: String,
    /// Object uid.
    pub uid: String,
}

/// The claims of a `ServiceAccount` token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject: `system:serviceaccount:<namespace>:<name>`.
    pub sub: String,
    /// Audiences the token is valid for.
    pub aud: Vec<String>,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issue time, seconds since the epoch.
    pub iat: i64,
    /// Not-before time, seconds since the epoch.
    pub nbf: i64,
    /// Unique token id.
    pub jti: String,
    /// Namespace and `ServiceAccount`.
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
}

impl Claims {
    /// Claims for a `ServiceAccount`, issued at `iat` and valid until `exp`.
    pub fn new(
        namespace: &str,
        name: &str,
        uid: &str,
        audiences: Vec<String>,
        iat: i64,
        exp: i64,
    ) -> Self {
        Self {
            iss: ISSUER.to_string(),
            sub: format!("system:serviceaccount:{namespace}:{name}"),
            aud: audiences,
            exp,
            iat,
            nbf: iat,
            jti: crate::state::new_uid(),
            kubernetes: KubernetesClaims {
                namespace: namespace.to_string(),
                serviceaccount: ObjectRef {
                    name: name.to_string(),
                    uid: uid.to_string(),
                },
            },
        }
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url segments of JSON.
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    /// The header names an algorithm other than `HS256`.
    #[error("token algorithm {0:?} is not accepted; only HS256 is")]
    Algorithm(String),
    /// The signature does not match this server's key.
    #[error("token signature is invalid")]
    Signature,
    /// `exp` is in the past.
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token is not valid yet")]
    NotYetValid,
    /// `iss` is not this server.
    #[error("token issuer {0:?} is not {ISSUER:?}")]
    Issuer(String),
    /// No audience in `aud` is accepted by this server.
    #[error("token audiences {0:?} do not include {ISSUER:?}")]
    Audience(Vec<String>),
    /// The `ServiceAccount` named in the token no longer exists (or was recreated).
    #[error("the ServiceAccount of the token no longer exists")]
    Revoked,
}

/// Signs and verifies tokens with one HMAC key.
pub struct Signer {
    key: hmac::Key,
    kid: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer with a fresh random key.
    pub fn random() -> Self {
        let secret: [u8; 32] = rand::random();
        Self::from_secret(&secret)
    }

    /// A signer with the given secret.
    pub fn from_secret(secret: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, secret);
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            kid: URL_SAFE_NO_PAD.encode(&digest.as_ref()[..8]),
        }
    }

    /// Encodes and signs claims.
    pub fn sign(&self, claims: &Claims) -> String {
        let header = serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": self.kid});
        let head = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap_or_default());
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let input = format!("{head}.{body}");
        let sig = hmac::sign(&self.key, input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    /// Checks the signature, issuer, audience and validity window (at `now`, seconds since
    /// the epoch) and returns the claims.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(head), Some(body), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed(
                "expected three dot-separated segments",
            ));
        };
        let header: serde_json::Value = URL_SAFE_NO_PAD
            .decode(head)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed("header is not base64url JSON"))?;
        let alg = header["alg"].as_str().unwrap_or_default();
        if alg != "HS256" {
            return Err(TokenError::Algorithm(alg.to_string()));
        }
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| TokenError::Malformed("signature is not base64url"))?;
        let input_len = head.len() + 1 + body.len();
        hmac::verify(&self.key, &token.as_bytes()[..input_len], &sig)
            .map_err(|_| TokenError::Signature)?;
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(body)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed("claims are not base64url JSON"))?;
        if claims.iss != ISSUER {
            return Err(TokenError::Issuer(claims.iss));
        }
        if !claims.aud.iter().any(|a| a == ISSUER) {
            return Err(TokenError::Audience(claims.aud));
        }
        if now >= claims.exp {
            return Err(TokenError::Expired);
        }
        if now < claims.nbf {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }
}

/// Seconds since the epoch.
pub fn now_seconds() -> i64 {
    jiff::Timestamp::now().as_second()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims::new("ns", "sa", "u1", vec![ISSUER.into()], 1000, exp)
    }

    #[test]
    fn round_trip() {
        let s = Signer::random();
        let t = s.sign(&claims(2000));
        let c = s.verify(&t, 1500).unwrap();
        assert_eq!(c.sub, "system:serviceaccount:ns:sa");
        assert_eq!(c.kubernetes.serviceaccount.uid, "u1");
    }

    #[test]
    fn refuses_other_keys_expiry_and_audience() {
        let s = Signer::random();
        let other = Signer::random();
        let t = other.sign(&claims(2000));
        assert_eq!(s.verify(&t, 1500), Err(TokenError::Signature));
        let t = s.sign(&claims(2000));
        assert_eq!(s.verify(&t, 2000), Err(TokenError::Expired));
        assert_eq!(s.verify(&t, 999), Err(TokenError::NotYetValid));
        let mut c = claims(2000);
        c.aud = vec!["vault".into()];
        let t = s.sign(&c);
        assert!(matches!(s.verify(&t, 1500), Err(TokenError::Audience(_))));
        assert!(matches!(
            s.verify("a.b", 1500),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn refuses_tampered_claims() {
        let s = Signer::random();
        let t = s.sign(&claims(2000));
        let parts: Vec<&str> = t.split('.').collect();
        let mut c = claims(2000);
        c.sub = "system:serviceaccount:kube-system:admin".into();
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap());
        let forged = format!("{}.{body}.{}", parts[0], parts[2]);
        assert_eq!(s.verify(&forged, 1500), Err(TokenError::Signature));
    }
}
