//! Keys, roles and authorization for herd.
//!
//! Everything here is a pure function or an in-memory structure, so the
//! server's HTTP layer stays thin: it reads the [`credential`] from the
//! headers, turns it into a [`Principal`] with the [`KeyRing`], [`classify`]es
//! the request into an [`Action`], and asks [`Openness::authorize`] whether
//! the principal may do it; routes that write a Node for a nodelet also ask
//! [`node_may_change`]. Keys are made by [`issue`] (and, for the join
//! exchange, [`plan_join`]); their hashes never leave this crate and the
//! store.

mod authorize;
mod classify;
mod credential;
mod issue;
mod keyfile;
mod keyring;
mod node_restriction;
mod principal;
mod token;

pub use authorize::{
    Action, ApiRequest, Denied, ModelPolicy, Openness, Subresource, Verb, authorize, resources,
};
pub use classify::{Classified, classify};
pub use credential::{
    API_KEY_HEADER, Credential, SESSION_COOKIE, SessionId, credential, is_credential_header,
};
pub use herd_api::Role;
pub use issue::{Issued, JoinPlan, JoinRefused, issue, issue_with, plan_join};
pub use keyfile::{KeyFileError, read_key_file, write_key_file};
pub use keyring::{AuthError, KeyEntry, KeyRing, check, entries};
pub use node_restriction::{NODELET_SPEC_FIELDS, node_may_change};
pub use principal::{KeyPrincipal, Principal};
pub use token::{
    GenerateError, KeyId, NewKey, PREFIX, SECRET_BYTES, SECRET_LEN, Secret, SecretHash, Token,
    TokenError, generate, hash,
};
