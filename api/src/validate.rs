//! Validation rules as pure functions. Each returns the problems it found as
//! [`FieldError`]s naming the field, so the server can answer with all of them
//! at once.

use std::collections::BTreeMap;
use std::fmt;

use crate::StatusCause;

/// One problem with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path, e.g. `spec.nodeSelector.matchLabels`.
    pub field: String,
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, …
    pub reason: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: "FieldValueInvalid",
            message: message.into(),
        }
    }
    pub fn required(field: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: "FieldValueRequired",
            message: "Required value".into(),
        }
    }
    pub fn not_supported(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: "FieldValueNotSupported",
            message: message.into(),
        }
    }
    pub fn to_cause(&self) -> StatusCause {
        StatusCause {
            field: self.field.clone(),
            reason: self.reason.to_owned(),
            message: self.message.clone(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A DNS-1123 label: at most 63 characters of `a-z`, `0-9` and `-`, starting
/// and ending with an alphanumeric. Names appear in URLs and hostnames.
pub fn dns1123_label(value: &str) -> Result<(), String> {
    const RULE: &str = "must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters";
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > 63 {
        return Err(format!("is {} characters long; {RULE}", value.len()));
    }
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    let bytes = value.as_bytes();
    if !value.chars().all(ok_char) || bytes[0] == b'-' || bytes[bytes.len() - 1] == b'-' {
        return Err(format!("{value:?} {RULE}"));
    }
    Ok(())
}

/// Turns a hostname such as `GPU-Box.lab.local` into a valid object name
/// (`gpu-box-lab-local`), so machines can register under their own names.
pub fn sanitize_name(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed: String = out.trim_matches('-').chars().take(63).collect();
    let trimmed = trimmed.trim_end_matches('-').to_owned();
    if trimmed.is_empty() {
        "node".to_owned()
    } else {
        trimmed
    }
}

fn label_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Label keys: `[prefix/]name` as in Kubernetes (prefix a DNS subdomain).
pub fn label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        let ok =
            !p.is_empty() && p.len() <= 253 && p.split('.').all(|part| dns1123_label(part).is_ok());
        if !ok {
            return Err(format!("label key {key:?}: prefix must be a DNS subdomain"));
        }
    }
    if !label_name_part(name) {
        return Err(format!(
            "label key {key:?}: name must be 1-63 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// Label values: empty, or like a key's name part.
pub fn label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || label_name_part(value) {
        Ok(())
    } else {
        Err(format!(
            "label value {value:?} must be at most 63 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ))
    }
}

/// Most labels one object may carry. Kubernetes bounds labels only through
/// the object's size; herd keeps every object's labels in memory for selector
/// matching, so it bounds their number too.
pub const MAX_LABELS: usize = 256;

/// Most bytes of annotations (keys plus values) one object may carry, as in
/// Kubernetes.
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

/// Largest object the server stores, serialized: every change to an object
/// is kept whole for watchers, so this bounds what one small request (a
/// one-field patch) can cost in memory and on disk.
pub const MAX_OBJECT_BYTES: usize = 256 * 1024;

/// The problem with a serialized object of `len` bytes, if it is too large.
pub fn object_size(len: usize) -> Result<(), String> {
    if len > MAX_OBJECT_BYTES {
        Err(format!(
            "the object is {len} bytes serialized; the limit is {MAX_OBJECT_BYTES} bytes (256 KiB)"
        ))
    } else {
        Ok(())
    }
}

/// A few PEM `CERTIFICATE` blocks and nothing else, at most `max` bytes.
/// Only the shape is checked here (the certificates are parsed where they
/// are used, which reports a bad one on the node); the point is a clear
/// error for a key, a path or a typo pasted in place of a certificate.
pub fn pem_certificates(pem: &str, max: usize) -> Result<(), String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    if pem.len() > max {
        return Err(format!("is {} bytes; the limit is {max}", pem.len()));
    }
    let mut blocks = 0;
    let mut rest = pem.trim();
    while !rest.is_empty() {
        let Some(body) = rest.strip_prefix(BEGIN) else {
            return Err(format!("must hold PEM certificates only ({BEGIN} … {END})"));
        };
        let Some((body, after)) = body.split_once(END) else {
            return Err(format!("a certificate has no {END} line"));
        };
        let b64: Vec<char> = body.chars().filter(|c| !c.is_whitespace()).collect();
        let is_b64 = |c: &char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
        // The smallest real certificate is a few hundred bytes of DER.
        if b64.len() < 200 || !b64.iter().all(is_b64) {
            return Err("a certificate's body is not a base64 DER certificate".to_owned());
        }
        blocks += 1;
        rest = after.trim_start();
    }
    if blocks == 0 {
        return Err("holds no certificate".to_owned());
    }
    Ok(())
}

/// Checks every key and value of a label map at `path`, and their number.
pub fn labels(path: &str, labels: &BTreeMap<String, String>, errors: &mut Vec<FieldError>) {
    if labels.len() > MAX_LABELS {
        // One error, not one per label: the answer stays small.
        errors.push(FieldError::invalid(
            path,
            format!(
                "{} labels; the limit is {MAX_LABELS} labels per object",
                labels.len()
            ),
        ));
        return;
    }
    for (k, v) in labels {
        if let Err(e) = label_key(k) {
            errors.push(FieldError::invalid(path, e));
        }
        if let Err(e) = label_value(v) {
            errors.push(FieldError::invalid(format!("{path}.{k}"), e));
        }
    }
}

/// An absolute `http://` or `https://` URL with a host and an optional port.
pub fn http_url(value: &str) -> Result<(), String> {
    let rest = if let Some(r) = value.strip_prefix("http://") {
        r
    } else if let Some(r) = value.strip_prefix("https://") {
        r
    } else {
        return Err(format!("{value:?} must be an http:// or https:// URL"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(format!("{value:?} must not carry credentials"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, after)) => (h, after.strip_prefix(':')),
            None => return Err(format!("{value:?} has an unterminated IPv6 address")),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{value:?} has no host"));
    }
    if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{value:?} has an invalid host"));
    }
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => {}
            _ => return Err(format!("{value:?} has an invalid port {p:?}")),
        }
    }
    Ok(())
}

/// Checks `value` lies in `min..=max`.
pub fn range(path: &str, value: i64, min: i64, max: i64, errors: &mut Vec<FieldError>) {
    if value < min || value > max {
        errors.push(FieldError::invalid(
            path,
            format!("{value} is out of range: must be between {min} and {max}"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        let cases = [
            ("gpu-box-1", true),
            ("a", true),
            ("0abc", true),
            ("", false),
            ("-a", false),
            ("a-", false),
            ("Gpu", false),
            ("a.b", false),
            ("a_b", false),
            (&"x".repeat(63), true),
            (&"x".repeat(64), false),
        ];
        for (name, ok) in cases {
            assert_eq!(dns1123_label(name).is_ok(), ok, "{name:?}");
        }
    }

    #[test]
    fn sanitize_hostnames() {
        let cases = [
            ("GPU-Box.lab.local", "gpu-box-lab-local"),
            ("host_1", "host-1"),
            ("--x--", "x"),
            ("", "node"),
            ("...", "node"),
        ];
        for (raw, want) in cases {
            assert_eq!(sanitize_name(raw), want, "{raw:?}");
            assert!(dns1123_label(&sanitize_name(raw)).is_ok());
        }
        assert_eq!(sanitize_name(&"a".repeat(100)).len(), 63);
    }

    #[test]
    fn label_keys_and_values() {
        let keys = [
            ("gpu", true),
            ("herd.dev/zone", true),
            ("a/b/c", false),
            ("/x", false),
            ("-x", false),
            ("x y", false),
        ];
        for (k, ok) in keys {
            assert_eq!(label_key(k).is_ok(), ok, "{k:?}");
        }
        let values = [
            ("", true),
            ("nvidia", true),
            ("a.b_c-d", true),
            ("-x", false),
            ("x y", false),
        ];
        for (v, ok) in values {
            assert_eq!(label_value(v).is_ok(), ok, "{v:?}");
        }
    }

    #[test]
    fn label_and_object_limits() {
        let many = |n: usize| -> BTreeMap<String, String> {
            (0..n).map(|i| (format!("k{i}"), "v".to_owned())).collect()
        };
        for (n, errors) in [(0, 0), (MAX_LABELS, 0), (MAX_LABELS + 1, 1), (20_000, 1)] {
            let mut found = Vec::new();
            labels("metadata.labels", &many(n), &mut found);
            assert_eq!(found.len(), errors, "{n} labels: {found:?}");
            if let Some(e) = found.first() {
                assert!(e.message.contains("256"), "names the limit: {e}");
            }
        }
        let long_prefix = format!("{}/x", "a".repeat(254));
        let long_name = "n".repeat(64);
        let long_value = "v".repeat(64);
        for (k, v, ok) in [
            ("a/x", "v", true),
            (long_prefix.as_str(), "v", false),
            (long_name.as_str(), "v", false),
            ("k", long_value.as_str(), false),
        ] {
            let mut found = Vec::new();
            labels(
                "l",
                &BTreeMap::from([(k.to_owned(), v.to_owned())]),
                &mut found,
            );
            assert_eq!(found.is_empty(), ok, "{k:?}={v:?}");
        }
        for (len, ok) in [
            (0, true),
            (MAX_OBJECT_BYTES, true),
            (MAX_OBJECT_BYTES + 1, false),
        ] {
            assert_eq!(object_size(len).is_ok(), ok, "{len}");
        }
    }

    #[test]
    fn urls() {
        let cases = [
            ("http://127.0.0.1:11434", true),
            ("https://gpu-1.lab", true),
            ("http://[::1]:11434/", true),
            ("http://localhost:11434/api", true),
            ("ftp://x", false),
            ("127.0.0.1:11434", false),
            ("http://", false),
            ("http://:80", false),
            ("http://x:0", false),
            ("http://x:99999", false),
            ("http://u:p@x", false),
            ("http://x y", false),
        ];
        for (u, ok) in cases {
            assert_eq!(http_url(u).is_ok(), ok, "{u:?}");
        }
    }
}
