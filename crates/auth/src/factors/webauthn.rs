//! The relying-party side of WebAuthn (Level 2) that passkeys need: checking a new credential
//! (`navigator.credentials.create`) and an assertion (`navigator.credentials.get`).
//!
//! Attestation is not asked for (`attestation: "none"`): Portcullis trusts the account that
//! registers a passkey, not the make of the authenticator, so the attestation statement is not
//! checked. Everything else the specification's verification procedures require is: the
//! ceremony type, the challenge (issued by us and sealed, so any replica can check it), the
//! origin, the RP ID hash, the user-present and (when asked) user-verified flags, the algorithm,
//! the signature over `authenticatorData ‖ SHA-256(clientDataJSON)`, and a signature counter
//! that must grow when the authenticator keeps one. ES256, EdDSA and RS256 keys are accepted
//! (what platform authenticators, security keys and Windows Hello make).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ciborium::Value;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::secret::constant_time_eq;

/// COSE algorithm numbers (RFC 9053).
pub const ES256: i64 = -7;
pub const EDDSA: i64 = -8;
pub const RS256: i64 = -257;

const FLAG_USER_PRESENT: u8 = 0x01;
const FLAG_USER_VERIFIED: u8 = 0x04;
const FLAG_ATTESTED_DATA: u8 = 0x40;

/// Why a credential or an assertion was refused; every case is the client's (or an attacker's)
/// doing, answered "that passkey did not work" with the reason in the log.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebauthnError {
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("the browser answered a different ceremony ({0})")]
    WrongType(String),
    #[error("the challenge is not the one this page was given")]
    WrongChallenge,
    #[error("the page's origin {0:?} is not Portcullis's")]
    WrongOrigin(String),
    #[error("the credential is for another site (RP ID)")]
    WrongRpId,
    #[error("the authenticator did not see the user (user presence flag)")]
    NotPresent,
    #[error("the authenticator did not verify the user (PIN or biometrics)")]
    NotVerified,
    #[error("the key's algorithm {0} is not supported (ES256, EdDSA, RS256 are)")]
    Algorithm(i64),
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the signature counter went backwards: the passkey may have been cloned")]
    CounterWentBack,
}

/// What a relying party is: its ID (the host of its public URL) and its exact origin.
#[derive(Clone, Debug)]
pub struct RelyingParty {
    pub id: String,
    pub origin: String,
}

impl RelyingParty {
    /// The relying party of Portcullis at `public_url` (`https://auth.example.com`); `None`
    /// when its host is an IP address, which browsers refuse as an RP ID.
    pub fn of(public_url: &str) -> Option<Self> {
        let rest = public_url
            .strip_prefix("https://")
            .or_else(|| public_url.strip_prefix("http://"))?;
        let authority = rest.split('/').next()?;
        let host = authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host)
            .to_ascii_lowercase();
        let origin =
            public_url[..public_url.len() - rest.len() + authority.len()].to_ascii_lowercase();
        let ip = host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[');
        (!host.is_empty() && !ip).then_some(RelyingParty { id: host, origin })
    }
}

/// A registered credential, as stored (in the factor's sealed secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// The credential id, base64url.
    pub id: String,
    /// The COSE public key, base64url of its CBOR.
    pub public_key: String,
    pub algorithm: i64,
    /// The last signature counter seen (0: the authenticator keeps none).
    pub counter: u32,
}

/// What the browser sends back from `navigator.credentials.create`, base64url fields.
#[derive(Debug, Deserialize)]
pub struct NewCredential {
    #[serde(rename = "clientDataJSON")]
    pub client_data_json: String,
    #[serde(rename = "attestationObject")]
    pub attestation_object: String,
}

/// What the browser sends back from `navigator.credentials.get`, base64url fields.
#[derive(Debug, Deserialize)]
pub struct Assertion {
    /// The credential id.
    pub id: String,
    #[serde(rename = "clientDataJSON")]
    pub client_data_json: String,
    #[serde(rename = "authenticatorData")]
    pub authenticator_data: String,
    pub signature: String,
    /// The user handle a discoverable credential returns (our user id, base64url).
    #[serde(rename = "userHandle", default)]
    pub user_handle: Option<String>,
}

#[derive(Deserialize)]
struct ClientData {
    #[serde(rename = "type")]
    kind: String,
    challenge: String,
    origin: String,
}

fn decode(field: &'static str, text: &str) -> Result<Vec<u8>, WebauthnError> {
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| WebauthnError::Malformed(field))
}

/// The parts of `authenticatorData` that are checked.
struct AuthenticatorData<'a> {
    rp_id_hash: &'a [u8],
    flags: u8,
    counter: u32,
    /// After the fixed 37 bytes: the attested credential data, when the flag says so.
    rest: &'a [u8],
}

fn authenticator_data(bytes: &[u8]) -> Result<AuthenticatorData<'_>, WebauthnError> {
    if bytes.len() < 37 {
        return Err(WebauthnError::Malformed("authenticator data"));
    }
    Ok(AuthenticatorData {
        rp_id_hash: &bytes[..32],
        flags: bytes[32],
        counter: u32::from_be_bytes([bytes[33], bytes[34], bytes[35], bytes[36]]),
        rest: &bytes[37..],
    })
}

/// The checks both ceremonies share: client data (type, challenge, origin), RP ID hash, flags.
fn check_common(
    rp: &RelyingParty,
    (client_data_json, kind): (&[u8], &str),
    challenge: &str,
    data: &AuthenticatorData<'_>,
    require_verification: bool,
) -> Result<(), WebauthnError> {
    let client: ClientData = serde_json::from_slice(client_data_json)
        .map_err(|_| WebauthnError::Malformed("client data"))?;
    if client.kind != kind {
        return Err(WebauthnError::WrongType(client.kind));
    }
    if !constant_time_eq(client.challenge.as_bytes(), challenge.as_bytes()) {
        return Err(WebauthnError::WrongChallenge);
    }
    if client.origin != rp.origin {
        return Err(WebauthnError::WrongOrigin(client.origin));
    }
    if !constant_time_eq(data.rp_id_hash, &Sha256::digest(rp.id.as_bytes())) {
        return Err(WebauthnError::WrongRpId);
    }
    if data.flags & FLAG_USER_PRESENT == 0 {
        return Err(WebauthnError::NotPresent);
    }
    if require_verification && data.flags & FLAG_USER_VERIFIED == 0 {
        return Err(WebauthnError::NotVerified);
    }
    Ok(())
}

/// Checks a new credential against the `challenge` its page was given; the credential to
/// store.
pub fn verify_registration(
    rp: &RelyingParty,
    challenge: &str,
    response: &NewCredential,
    require_verification: bool,
) -> Result<Credential, WebauthnError> {
    let client_data = decode("client data", &response.client_data_json)?;
    let attestation = decode("attestation object", &response.attestation_object)?;
    let object: Value = ciborium::de::from_reader(attestation.as_slice())
        .map_err(|_| WebauthnError::Malformed("attestation object"))?;
    let auth_data = map_get(&object, "authData")
        .and_then(Value::as_bytes)
        .ok_or(WebauthnError::Malformed("attestation object"))?;
    let data = authenticator_data(auth_data)?;
    check_common(
        rp,
        (&client_data, "webauthn.create"),
        challenge,
        &data,
        require_verification,
    )?;
    if data.flags & FLAG_ATTESTED_DATA == 0 || data.rest.len() < 18 {
        return Err(WebauthnError::Malformed("attested credential data"));
    }
    // aaguid (16 bytes), credential id length (2), id, then the COSE key.
    let id_len = usize::from(u16::from_be_bytes([data.rest[16], data.rest[17]]));
    let id = data
        .rest
        .get(18..18 + id_len)
        .ok_or(WebauthnError::Malformed("credential id"))?;
    let key_bytes = &data.rest[18 + id_len..];
    let mut reader = key_bytes;
    let key: Value = ciborium::de::from_reader(&mut reader)
        .map_err(|_| WebauthnError::Malformed("credential public key"))?;
    let used = key_bytes.len() - reader.len();
    let algorithm = cose_int(&key, 3).ok_or(WebauthnError::Malformed("credential public key"))?;
    // The key must be one we can use: converting it now refuses what could never verify.
    public_key(&key, algorithm)?;
    Ok(Credential {
        id: URL_SAFE_NO_PAD.encode(id),
        public_key: URL_SAFE_NO_PAD.encode(&key_bytes[..used]),
        algorithm,
        counter: data.counter,
    })
}

/// Checks an assertion of `credential` against the `challenge` its page was given; the new
/// signature counter to store.
pub fn verify_assertion(
    rp: &RelyingParty,
    challenge: &str,
    credential: &Credential,
    response: &Assertion,
    require_verification: bool,
) -> Result<(u32, bool), WebauthnError> {
    if response.id != credential.id {
        return Err(WebauthnError::Malformed("credential id"));
    }
    let client_data = decode("client data", &response.client_data_json)?;
    let auth_bytes = decode("authenticator data", &response.authenticator_data)?;
    let signature = decode("signature", &response.signature)?;
    let data = authenticator_data(&auth_bytes)?;
    check_common(
        rp,
        (&client_data, "webauthn.get"),
        challenge,
        &data,
        require_verification,
    )?;
    let key_bytes = decode("credential public key", &credential.public_key)?;
    let key: Value = ciborium::de::from_reader(key_bytes.as_slice())
        .map_err(|_| WebauthnError::Malformed("credential public key"))?;
    let (algorithm, key) = public_key(&key, credential.algorithm)?;
    let mut signed = auth_bytes.clone();
    signed.extend_from_slice(&Sha256::digest(&client_data));
    let verified = match key {
        PublicKey::Raw(bytes) => {
            ring::signature::UnparsedPublicKey::new(algorithm, bytes).verify(&signed, &signature)
        }
        PublicKey::Rsa { n, e } => ring::signature::RsaPublicKeyComponents { n, e }.verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            &signed,
            &signature,
        ),
    };
    verified.map_err(|_| WebauthnError::BadSignature)?;
    // Authenticators that count must count up; those that do not send 0 every time.
    if (data.counter != 0 || credential.counter != 0) && data.counter <= credential.counter {
        return Err(WebauthnError::CounterWentBack);
    }
    Ok((data.counter, data.flags & FLAG_USER_VERIFIED != 0))
}

enum PublicKey {
    /// An uncompressed P-256 point or an Ed25519 key, as `ring` takes them.
    Raw(Vec<u8>),
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
}

/// The verification algorithm and key of a COSE key (RFC 9053 §7): EC2 P-256, OKP Ed25519 or
/// RSA, each only with the algorithm it was registered with.
fn public_key(
    key: &Value,
    algorithm: i64,
) -> Result<
    (
        &'static dyn ring::signature::VerificationAlgorithm,
        PublicKey,
    ),
    WebauthnError,
> {
    let bytes = |label: i64| {
        cose_get(key, label)
            .and_then(Value::as_bytes)
            .cloned()
            .ok_or(WebauthnError::Malformed("credential public key"))
    };
    let key_type = cose_int(key, 1);
    let curve = cose_int(key, -1);
    match (algorithm, key_type, curve) {
        (ES256, Some(2), Some(1)) => {
            let (x, y) = (bytes(-2)?, bytes(-3)?);
            if x.len() != 32 || y.len() != 32 {
                return Err(WebauthnError::Malformed("credential public key"));
            }
            let mut point = vec![4u8];
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Ok((
                &ring::signature::ECDSA_P256_SHA256_ASN1,
                PublicKey::Raw(point),
            ))
        }
        (EDDSA, Some(1), Some(6)) => Ok((&ring::signature::ED25519, PublicKey::Raw(bytes(-2)?))),
        (RS256, Some(3), _) => Ok((
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            PublicKey::Rsa {
                n: bytes(-1)?,
                e: bytes(-2)?,
            },
        )),
        (other, _, _) => Err(WebauthnError::Algorithm(other)),
    }
}

fn map_get<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
}

fn cose_get(map: &Value, label: i64) -> Option<&Value> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_integer().and_then(|i| i64::try_from(i).ok()) == Some(label))
        .map(|(_, v)| v)
}

fn cose_int(map: &Value, label: i64) -> Option<i64> {
    cose_get(map, label)?
        .as_integer()
        .and_then(|i| i64::try_from(i).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::{DerSignature, SigningKey};

    const CHALLENGE: &str = "c2VhbGVkLWNoYWxsZW5nZQ";

    fn rp() -> RelyingParty {
        RelyingParty::of("http://localhost:4180").unwrap()
    }

    fn client_data(kind: &str, challenge: &str, origin: &str) -> String {
        URL_SAFE_NO_PAD.encode(
            serde_json::json!({"type": kind, "challenge": challenge, "origin": origin}).to_string(),
        )
    }

    fn cbor(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::ser::into_writer(value, &mut out).unwrap();
        out
    }

    /// What a software authenticator with `key` makes: a registration and its credential id.
    fn register(key: &SigningKey, flags: u8) -> NewCredential {
        let point = key.verifying_key().to_encoded_point(false);
        let cose = Value::Map(vec![
            (Value::from(1), Value::from(2)),
            (Value::from(3), Value::from(ES256)),
            (Value::from(-1), Value::from(1)),
            (Value::from(-2), Value::Bytes(point.x().unwrap().to_vec())),
            (Value::from(-3), Value::Bytes(point.y().unwrap().to_vec())),
        ]);
        let mut auth = Sha256::digest(b"localhost").to_vec();
        auth.push(flags | FLAG_ATTESTED_DATA);
        auth.extend_from_slice(&0u32.to_be_bytes());
        auth.extend_from_slice(&[0u8; 16]);
        auth.extend_from_slice(&3u16.to_be_bytes());
        auth.extend_from_slice(b"cid");
        auth.extend_from_slice(&cbor(&cose));
        let object = Value::Map(vec![
            (Value::from("fmt"), Value::from("none")),
            (Value::from("attStmt"), Value::Map(vec![])),
            (Value::from("authData"), Value::Bytes(auth)),
        ]);
        NewCredential {
            client_data_json: client_data("webauthn.create", CHALLENGE, "http://localhost:4180"),
            attestation_object: URL_SAFE_NO_PAD.encode(cbor(&object)),
        }
    }

    fn assert_with(key: &SigningKey, counter: u32, flags: u8, challenge: &str) -> Assertion {
        let client = client_data("webauthn.get", challenge, "http://localhost:4180");
        let mut auth = Sha256::digest(b"localhost").to_vec();
        auth.push(flags);
        auth.extend_from_slice(&counter.to_be_bytes());
        let mut signed = auth.clone();
        signed.extend_from_slice(&Sha256::digest(URL_SAFE_NO_PAD.decode(&client).unwrap()));
        let signature: DerSignature = key.sign(&signed);
        Assertion {
            id: URL_SAFE_NO_PAD.encode(b"cid"),
            client_data_json: client,
            authenticator_data: URL_SAFE_NO_PAD.encode(&auth),
            signature: URL_SAFE_NO_PAD.encode(signature.as_bytes()),
            user_handle: None,
        }
    }

    #[test]
    fn the_relying_party_is_the_public_urls_host_and_origin() {
        let rp = RelyingParty::of("https://Auth.Example.com/base").unwrap();
        assert_eq!(
            (rp.id.as_str(), rp.origin.as_str()),
            ("auth.example.com", "https://auth.example.com")
        );
        let rp = rp_with_port();
        assert_eq!(
            (rp.id.as_str(), rp.origin.as_str()),
            ("localhost", "http://localhost:4180")
        );
        assert!(RelyingParty::of("ftp://x").is_none());
        assert!(
            RelyingParty::of("http://127.0.0.1:4180").is_none(),
            "no IP as an RP ID"
        );
        assert!(RelyingParty::of("http://[::1]:4180").is_none());
    }

    fn rp_with_port() -> RelyingParty {
        RelyingParty::of("http://localhost:4180/").unwrap()
    }

    #[test]
    fn a_registration_and_its_assertions_verify_and_count_up() {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let uv = FLAG_USER_PRESENT | FLAG_USER_VERIFIED;
        let credential = verify_registration(&rp(), CHALLENGE, &register(&key, uv), true).unwrap();
        assert_eq!(credential.algorithm, ES256);
        assert_eq!(credential.id, URL_SAFE_NO_PAD.encode(b"cid"));

        let (counter, verified) = verify_assertion(
            &rp(),
            CHALLENGE,
            &credential,
            &assert_with(&key, 5, uv, CHALLENGE),
            true,
        )
        .unwrap();
        assert_eq!((counter, verified), (5, true));
        let stored = Credential {
            counter,
            ..credential.clone()
        };
        assert_eq!(
            verify_assertion(
                &rp(),
                CHALLENGE,
                &stored,
                &assert_with(&key, 5, uv, CHALLENGE),
                true
            ),
            Err(WebauthnError::CounterWentBack),
            "a replayed or cloned authenticator's counter does not grow"
        );
        // Authenticators without a counter send 0 every time.
        assert!(
            verify_assertion(
                &rp(),
                CHALLENGE,
                &credential,
                &assert_with(&key, 0, uv, CHALLENGE),
                true
            )
            .is_ok()
        );
    }

    #[test]
    fn every_check_refuses_what_it_guards() {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let uv = FLAG_USER_PRESENT | FLAG_USER_VERIFIED;
        let credential = verify_registration(&rp(), CHALLENGE, &register(&key, uv), true).unwrap();
        let good = || assert_with(&key, 1, uv, CHALLENGE);
        let check =
            |a: &Assertion, need_uv| verify_assertion(&rp(), CHALLENGE, &credential, a, need_uv);

        let other_challenge = assert_with(&key, 1, uv, "b3RoZXI");
        assert_eq!(
            check(&other_challenge, true),
            Err(WebauthnError::WrongChallenge)
        );
        let mut other_origin = good();
        other_origin.client_data_json =
            client_data("webauthn.get", CHALLENGE, "http://evil.example");
        assert!(matches!(
            check(&other_origin, true),
            Err(WebauthnError::WrongOrigin(_))
        ));
        let mut create_instead = good();
        create_instead.client_data_json =
            client_data("webauthn.create", CHALLENGE, "http://localhost:4180");
        assert!(matches!(
            check(&create_instead, true),
            Err(WebauthnError::WrongType(_))
        ));
        let not_verified = assert_with(&key, 1, FLAG_USER_PRESENT, CHALLENGE);
        assert_eq!(check(&not_verified, true), Err(WebauthnError::NotVerified));
        assert!(
            check(&not_verified, false).is_ok(),
            "as a second factor, presence is enough"
        );
        let absent = assert_with(&key, 1, FLAG_USER_VERIFIED, CHALLENGE);
        assert_eq!(check(&absent, false), Err(WebauthnError::NotPresent));
        let mut forged = good();
        let mut signature = URL_SAFE_NO_PAD.decode(&forged.signature).unwrap();
        let last = signature.len() - 1;
        signature[last] ^= 1;
        forged.signature = URL_SAFE_NO_PAD.encode(signature);
        assert_eq!(check(&forged, true), Err(WebauthnError::BadSignature));
        let other_key = SigningKey::random(&mut rand::rngs::OsRng);
        assert_eq!(
            check(&assert_with(&other_key, 1, uv, CHALLENGE), true),
            Err(WebauthnError::BadSignature)
        );
        let other_site = RelyingParty::of("http://evil.localhost:4180").unwrap();
        let mut there = good();
        there.client_data_json = client_data("webauthn.get", CHALLENGE, &other_site.origin);
        assert_eq!(
            verify_assertion(&other_site, CHALLENGE, &credential, &there, true),
            Err(WebauthnError::WrongRpId)
        );
        for garbage in ["", "!!", "AAAA"] {
            let mut bad = good();
            bad.authenticator_data = garbage.into();
            assert!(
                matches!(check(&bad, true), Err(WebauthnError::Malformed(_))),
                "{garbage:?}"
            );
        }
        let mut bad = register(&key, uv);
        bad.attestation_object = URL_SAFE_NO_PAD.encode(b"not cbor at all");
        assert!(verify_registration(&rp(), CHALLENGE, &bad, true).is_err());
        assert_eq!(
            verify_registration(&rp(), CHALLENGE, &register(&key, FLAG_USER_PRESENT), true),
            Err(WebauthnError::NotVerified)
        );
    }
}
