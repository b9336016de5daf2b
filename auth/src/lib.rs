//! Keys, roles and authorization for herd.
//!
//! Everything here is a pure function or an in-memory structure, so the
//! server's HTTP layer stays thin: it reads the [`credential`] from the
//! headers, turns it into a [`Principal`] with the [`KeyRing`], and asks
//! [`authorize`] (through [`Openness::authorize`]) whether the principal may
//! do the [`Action`] the route stands for; routes that write a Node for a
//! nodelet also ask [`node_may_change`].

mod authorize;
mod classify;
mod credential;
mod issue;
mod keyring;
mod principal;
mod token;

pub use authorize::{
    Action, ApiRequest, Denied, NODELET_SPEC_FIELDS, Openness, Subresource, Verb, authorize,
    node_may_change, resources,
};
pub use classify::{Classified, classify};
pub use credential::{
    API_KEY_HEADER, Credential, SESSION_COOKIE, SessionId, credential, is_credential_header,
};
pub use herd_api::Role;
pub use issue::{Issued, JoinPlan, JoinRefused, issue, plan_join};
pub use keyring::{AuthError, KeyEntry, KeyRing, check, entries};
pub use principal::{KeyPrincipal, Principal};
pub use token::{
    GenerateError, KeyId, NewKey, PREFIX, SECRET_BYTES, SECRET_LEN, Secret, SecretHash, Token,
    TokenError, generate, hash,
};
