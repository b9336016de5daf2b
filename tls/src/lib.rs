//! TLS for herd, with rustls and ring only.
//!
//! - Server: [`ServerTls`] serves a PEM certificate and key that are reloaded when their
//!   files change, and wraps accepted connections; [`SelfSigned`] keeps a CA and a server
//!   certificate in the data directory for `--tls-self-signed`, renewing the certificate
//!   under the same CA.
//! - Client: [`ClientTrust`] builds the rustls configuration (or sets up a reqwest
//!   builder) for a CA file, a CA pinned by its SHA-256 as a join key carries it, or the
//!   public roots.

mod client;
mod der;
mod error;
mod files;
mod reload;
mod selfsigned;
mod server;

pub use client::{ClientTrust, Fingerprint, TrustError, backend_client_config, sha256_hex};
pub use error::TlsError;
pub use selfsigned::{
    CA_CERT_FILE, CA_KEY_FILE, Outcome, RENEW_BEFORE_DAYS, RenewReason, SERVER_CERT_FILE,
    SERVER_KEY_FILE, SelfSigned,
};
pub use server::{HANDSHAKE_TIMEOUT, RELOAD_CHECK_INTERVAL, ServerTls};
