//! The token format, making new keys, and hashing their secrets.
//!
//! A token is `herd_<id>_<secret>`: the fixed prefix makes it recognisable
//! (by people, by secret scanners, and by the proxy, which must tell it apart
//! from the placeholder keys SDKs send), the id finds the key without a scan,
//! and the secret is 32 bytes from the operating system's random source in
//! unpadded base64url. A join key printed by a server with a self-signed
//! certificate may end in `.<sha256 of the CA certificate, 64 hex digits>`, so
//! that a nodelet given only the router's URL and the token can verify the
//! server on first contact.
//!
//! The stored hash is a plain SHA-256 of the secret's text: the secret has 256
//! bits of entropy, so a slow, salted hash would add cost on every request
//! and no protection.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use herd_api::KEY_ID_LEN;
use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What every herd token starts with.
pub const PREFIX: &str = "herd_";
/// Random bytes in a secret.
pub const SECRET_BYTES: usize = 32;
/// Characters of a secret: `SECRET_BYTES` in unpadded base64url.
pub const SECRET_LEN: usize = 43;
/// Between the secret and the CA fingerprint.
const CA_SEPARATOR: char = '.';

/// The bytes of unpadded base64url, as a table: checking a secret is one
/// lookup per byte.
static BASE64URL: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
        b += 1;
    }
    t
};

/// The public part of a token: names the key, reveals nothing of its secret.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
///
/// Held inline, as the secret is: reading a token off a request allocates
/// nothing, which keeps the key check on the proxy's path cheap.
pub struct KeyId([u8; KEY_ID_LEN]);

impl KeyId {
    /// Checks the syntax ([`herd_api::key_id`]).
    pub fn parse(s: &str) -> Result<Self, TokenError> {
        Self::from_bytes(s.as_bytes())
    }

    fn from_bytes(s: &[u8]) -> Result<Self, TokenError> {
        let id: [u8; KEY_ID_LEN] = s
            .try_into()
            .map_err(|_| TokenError::Malformed("the key id"))?;
        if id
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            Ok(Self(id))
        } else {
            Err(TokenError::Malformed("the key id"))
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII letters and digits get in (`parse`, `random_id`).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The secret part of a token. Neither `Debug` nor any error shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; SECRET_LEN]);

impl Secret {
    /// Checks the syntax: [`SECRET_LEN`] characters of unpadded base64url.
    fn parse(s: &str) -> Option<Secret> {
        Secret::from_bytes(s.as_bytes())
    }

    fn from_bytes(s: &[u8]) -> Option<Secret> {
        let secret: [u8; SECRET_LEN] = s.try_into().ok()?;
        // No early exit: a branch per byte costs more than the lookups.
        secret
            .iter()
            .fold(true, |ok, &b| ok & BASE64URL[usize::from(b)])
            .then_some(Secret(secret))
    }

    pub fn expose(&self) -> &str {
        // Only base64url characters get in (`parse`, `generate`).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    pub fn hash(&self) -> SecretHash {
        SecretHash(Sha256::digest(self.0).into())
    }

    /// Equal, in time that does not depend on where the secrets differ: the
    /// differences are folded together without a branch, and only the
    /// result is compared (in constant time, as `subtle` does it).
    pub fn matches(&self, other: &Secret) -> bool {
        let diff = self
            .0
            .iter()
            .zip(&other.0)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        diff.ct_eq(&0).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// SHA-256 of a secret. Compared only in constant time.
#[derive(Clone, Copy)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    /// Reads the 64 lowercase hex digits of `ApiKeyHash.spec.sha256`.
    pub fn from_hex(hex: &str) -> Option<Self> {
        decode_hex(hex.as_bytes()).map(Self)
    }

    /// The form stored in `ApiKeyHash.spec.sha256`.
    pub fn to_hex(&self) -> String {
        encode_hex(&self.0)
    }

    /// Equal, in time that does not depend on where the hashes differ.
    pub fn matches(&self, other: &SecretHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(<redacted>)")
    }
}

/// SHA-256 of a secret's text.
pub fn hash(secret: &str) -> SecretHash {
    SecretHash(Sha256::digest(secret.as_bytes()).into())
}

/// A parsed token. `Debug` and `Display` show the id and the CA fingerprint
/// but never the secret; [`Token::expose`] writes the whole token for the one
/// place that may hold it (a key file, the create response).
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub id: KeyId,
    pub secret: Secret,
    /// SHA-256 of the DER of the CA certificate that signed the server's.
    pub ca_sha256: Option<[u8; 32]>,
}

impl Token {
    /// Reads `herd_<id>_<secret>[.<ca sha256>]`. Errors name the part that is
    /// wrong, never its content.
    pub fn parse(s: &str) -> Result<Token, TokenError> {
        Token::parse_bytes(s.as_bytes())
    }

    /// [`Token::parse`] of a header's bytes: nothing to decode first, as
    /// everything valid in a token is ASCII.
    pub fn parse_bytes(s: &[u8]) -> Result<Token, TokenError> {
        let rest = s
            .strip_prefix(PREFIX.as_bytes())
            .ok_or(TokenError::NotHerd)?;
        let (id, rest) = rest
            .split_at_checked(KEY_ID_LEN)
            .ok_or(TokenError::Malformed("the key id"))?;
        let id = KeyId::from_bytes(id)?;
        let rest = rest
            .strip_prefix(b"_")
            .ok_or(TokenError::Malformed("the separator after the key id"))?;
        // The secret has a fixed length: what follows it is nothing or the
        // CA's fingerprint, so there is no separator to search for.
        let malformed_secret = TokenError::Malformed("the secret");
        let (secret, after) = rest.split_at_checked(SECRET_LEN).ok_or(malformed_secret)?;
        let secret = Secret::from_bytes(secret).ok_or(malformed_secret)?;
        let ca = match after.split_first() {
            None => None,
            Some((&b, hex)) if b == CA_SEPARATOR as u8 => Some(hex),
            Some(_) => return Err(malformed_secret),
        };
        let ca_sha256 = match ca {
            None => None,
            Some(hex) => Some(decode_hex(hex).ok_or(TokenError::Malformed("the CA fingerprint"))?),
        };
        Ok(Token {
            id,
            secret,
            ca_sha256,
        })
    }

    /// The same key, printed with the CA's fingerprint for a first contact
    /// over TLS with a self-signed certificate.
    pub fn with_ca_sha256(mut self, ca_sha256: [u8; 32]) -> Token {
        self.ca_sha256 = Some(ca_sha256);
        self
    }

    /// The whole token, secret included.
    pub fn expose(&self) -> String {
        let mut out = format!("{PREFIX}{}_{}", self.id, self.secret.expose());
        if let Some(ca) = &self.ca_sha256 {
            out.push(CA_SEPARATOR);
            out.push_str(&encode_hex(ca));
        }
        out
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}_<redacted>", self.id)?;
        if let Some(ca) = &self.ca_sha256 {
            write!(f, "{CA_SEPARATOR}{}", encode_hex(ca))?;
        }
        Ok(())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("id", &self.id.0)
            .field("secret", &self.secret)
            .field(
                "ca_sha256",
                &self.ca_sha256.as_ref().map(|ca| encode_hex(ca)),
            )
            .finish()
    }
}

/// Why a string is not a herd token. No variant carries any of the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a herd key (herd keys start with {PREFIX:?})")]
    NotHerd,
    #[error("malformed herd key: {0} is not in herd's format")]
    Malformed(&'static str),
}

/// The operating system's random source failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the operating system's random source: {0}")]
pub struct GenerateError(String);

/// A key just made: the token for its holder, the id and the hash for the store.
#[derive(Debug)]
pub struct NewKey {
    pub token: Token,
    pub id: KeyId,
    pub hash: SecretHash,
}

/// Makes a new key. The role does not change the token: what a key may do is
/// in its `ApiKey`, which the server writes beside the hash.
pub fn generate() -> Result<NewKey, GenerateError> {
    let mut bytes = [0u8; SECRET_BYTES];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| GenerateError(e.to_string()))?;
    let secret = Secret::parse(&URL_SAFE_NO_PAD.encode(bytes))
        .ok_or_else(|| GenerateError("the secret's encoding".to_owned()))?;
    let id = KeyId::parse(&random_id()?)
        .map_err(|_| GenerateError("the key id's alphabet".to_owned()))?;
    let hash = secret.hash();
    Ok(NewKey {
        token: Token {
            id: id.clone(),
            secret,
            ca_sha256: None,
        },
        id,
        hash,
    })
}

/// [`KEY_ID_LEN`] characters of `a-z0-9`, uniformly: bytes at or above 252
/// (the largest multiple of 36 that fits) are drawn again so no character is
/// likelier than another.
fn random_id() -> Result<String, GenerateError> {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut id = String::with_capacity(KEY_ID_LEN);
    let mut buf = [0u8; 32];
    while id.len() < KEY_ID_LEN {
        OsRng
            .try_fill_bytes(&mut buf)
            .map_err(|e| GenerateError(e.to_string()))?;
        for b in buf {
            if b < 252 && id.len() < KEY_ID_LEN {
                id.push(char::from(ALPHABET[usize::from(b % 36)]));
            }
        }
    }
    Ok(id)
}

fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// 64 hex digits (either case) into 32 bytes.
fn decode_hex(hex: &[u8]) -> Option<[u8; 32]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = hex;
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcde";
    const CA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn token() -> String {
        format!("herd_abcdefgh1234_{SECRET}")
    }

    #[test]
    fn generated_keys_parse_back_and_differ() {
        let a = generate().expect("random source");
        let b = generate().expect("random source");
        let text = a.token.expose();
        assert!(text.starts_with(PREFIX), "{}", a.token);
        assert_eq!(text.len(), PREFIX.len() + KEY_ID_LEN + 1 + SECRET_LEN);
        let back = Token::parse(&text).expect("own format");
        assert_eq!(back, a.token);
        assert_eq!(back.id, a.id);
        assert!(back.secret.hash().matches(&a.hash));
        assert_ne!(a.id, b.id);
        assert_ne!(a.token.secret, b.token.secret);
        assert!(!a.hash.matches(&b.hash));
        let decoded = URL_SAFE_NO_PAD
            .decode(a.token.secret.expose())
            .expect("base64url");
        assert_eq!(decoded.len(), SECRET_BYTES);
    }

    #[test]
    fn ids_use_the_whole_alphabet() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let id = random_id().expect("random source");
            herd_api::key_id(&id).expect("valid id");
            seen.extend(id.chars());
        }
        // 2400 draws from 36 characters: missing one has odds near 36 * e^-66.
        assert_eq!(seen.len(), 36, "{seen:?}");
    }

    #[test]
    fn parse_round_trips_with_and_without_ca() {
        let plain = Token::parse(&token()).expect("valid");
        assert_eq!(plain.id.as_str(), "abcdefgh1234");
        assert_eq!(plain.secret.expose(), SECRET);
        assert_eq!(plain.ca_sha256, None);
        assert_eq!(plain.expose(), token());

        let with_ca = format!("{}.{CA}", token());
        let parsed = Token::parse(&with_ca).expect("valid");
        assert_eq!(
            parsed.ca_sha256.map(|c| encode_hex(&c)),
            Some(CA.to_owned())
        );
        assert_eq!(parsed.expose(), with_ca);
        assert_eq!(
            plain.clone().with_ca_sha256(parsed.ca_sha256.expect("set")),
            parsed
        );

        let upper = format!("{}.{}", token(), CA.to_ascii_uppercase());
        assert_eq!(Token::parse(&upper).expect("either case").expose(), with_ca);
    }

    #[test]
    fn parse_rejects_malformed_input() {
        let cases = [
            ("", TokenError::NotHerd),
            ("ollama", TokenError::NotHerd),
            ("sk-abc", TokenError::NotHerd),
            ("HERD_abcdefgh1234_x", TokenError::NotHerd),
            ("herd_", TokenError::Malformed("the key id")),
            ("herd_abc", TokenError::Malformed("the key id")),
            ("herd_ABCDEFGH1234_x", TokenError::Malformed("the key id")),
            ("herd_abcdefgh123é_x", TokenError::Malformed("the key id")),
            (
                "herd_abcdefgh1234",
                TokenError::Malformed("the separator after the key id"),
            ),
            (
                "herd_abcdefgh1234-x",
                TokenError::Malformed("the separator after the key id"),
            ),
            ("herd_abcdefgh1234_", TokenError::Malformed("the secret")),
            (
                "herd_abcdefgh1234_short",
                TokenError::Malformed("the secret"),
            ),
            (
                &format!("herd_abcdefgh1234_{SECRET}x"),
                TokenError::Malformed("the secret"),
            ),
            (
                &format!("herd_abcdefgh1234_{}", &SECRET[1..]),
                TokenError::Malformed("the secret"),
            ),
            (
                &format!("herd_abcdefgh1234_{}+", &SECRET[1..]),
                TokenError::Malformed("the secret"),
            ),
            (
                &format!("herd_abcdefgh1234_{SECRET} "),
                TokenError::Malformed("the secret"),
            ),
            (
                &format!("herd_abcdefgh1234_{}.{CA}", &SECRET[1..]),
                TokenError::Malformed("the secret"),
            ),
            (
                &format!("herd_abcdefgh1234_{}é", &SECRET[2..]),
                TokenError::Malformed("the secret"),
            ),
            (
                &format!("{}.", token()),
                TokenError::Malformed("the CA fingerprint"),
            ),
            (
                &format!("{}.{}", token(), &CA[1..]),
                TokenError::Malformed("the CA fingerprint"),
            ),
            (
                &format!("{}.{}0", token(), CA),
                TokenError::Malformed("the CA fingerprint"),
            ),
            (
                &format!("{}.{}g", token(), &CA[1..]),
                TokenError::Malformed("the CA fingerprint"),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(Token::parse(input), Err(want), "{input:?}");
        }
    }

    #[test]
    fn secret_never_printed() {
        let t = Token::parse(&format!("{}.{CA}", token())).expect("valid");
        let shown = [
            format!("{t}"),
            format!("{t:?}"),
            format!("{:?}", t.secret),
            format!("{:?}", t.secret.hash()),
            format!(
                "{}",
                Token::parse(&format!("herd_abcdefgh1234_{SECRET}!")).expect_err("bad")
            ),
        ];
        for s in &shown {
            assert!(!s.contains(SECRET), "{s}");
            assert!(!s.contains(&SECRET[..10]), "{s}");
        }
        assert!(shown[0].contains("abcdefgh1234"), "{}", shown[0]);
        assert!(shown[0].contains(CA), "{}", shown[0]);
        let new = generate().expect("random source");
        let debug = format!("{new:?}");
        assert!(!debug.contains(new.token.secret.expose()), "{debug}");
        assert!(!debug.contains(&new.hash.to_hex()), "{debug}");
    }

    #[test]
    fn hash_is_sha256_of_the_secret_text() {
        // SHA-256("test"), a published test vector.
        assert_eq!(hash("test").to_hex(), CA);
        let h = SecretHash::from_hex(CA).expect("hex");
        assert!(h.matches(&hash("test")));
        assert!(!h.matches(&hash("tesu")));
        assert!(SecretHash::from_hex("zz").is_none());
    }
}
