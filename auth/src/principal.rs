//! Who made a request.

use std::fmt;
use std::sync::Arc;

use herd_api::Role;

/// The caller of one request, as the host found it before routing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// A request with a valid herd key.
    Key(KeyPrincipal),
    /// A request with no herd key: served only where the server is open
    /// (`--inference-auth open`, `--metrics-auth open`, `--open-registration`).
    Anonymous,
}

/// A valid key's identity. Names are shared, so handing one to every request
/// costs a reference count, not an allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPrincipal {
    /// `metadata.name` of the `ApiKey`.
    pub name: Arc<str>,
    pub role: Role,
    /// The node a `node` key is bound to.
    pub node: Option<Arc<str>>,
}

impl Principal {
    pub fn key(name: &str, role: Role, node: Option<&str>) -> Principal {
        Principal::Key(KeyPrincipal {
            name: name.into(),
            role,
            node: node.map(Into::into),
        })
    }

    pub fn role(&self) -> Option<Role> {
        match self {
            Principal::Key(k) => Some(k.role),
            Principal::Anonymous => None,
        }
    }

    /// `metadata.name` of the key, when there is one.
    pub fn key_name(&self) -> Option<&str> {
        match self {
            Principal::Key(k) => Some(&k.name),
            Principal::Anonymous => None,
        }
    }

    /// What the server writes into `spec.source` of an Event it stores for
    /// this caller, whatever the caller sent: `apikey/<name>`, or `anonymous`.
    /// Audit trails need the writer as the server saw it, not as it claimed.
    pub fn event_source(&self) -> String {
        match self {
            Principal::Key(k) => format!("apikey/{}", k.name),
            Principal::Anonymous => "anonymous".to_owned(),
        }
    }
}

/// `key "ci" (role viewer)`, `key "n1" (role node, node gpu-1)`, `a request
/// without a key`: the form refusals and logs use.
impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Key(KeyPrincipal {
                name,
                role,
                node: Some(node),
            }) => write!(f, "key {name:?} (role {role}, node {node})"),
            Principal::Key(KeyPrincipal { name, role, .. }) => {
                write!(f, "key {name:?} (role {role})")
            }
            Principal::Anonymous => f.write_str("a request without a key"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_source_names_the_key() {
        let cases = [
            (Principal::key("alice", Role::Admin, None), "apikey/alice"),
            (
                Principal::key("node-gpu-1", Role::Node, Some("gpu-1")),
                "apikey/node-gpu-1",
            ),
            (Principal::Anonymous, "anonymous"),
        ];
        for (p, want) in cases {
            assert_eq!(p.event_source(), want, "{p:?}");
        }
    }

    #[test]
    fn display_names_key_and_role() {
        assert_eq!(
            Principal::key("ci", Role::Viewer, None).to_string(),
            r#"key "ci" (role viewer)"#
        );
        assert_eq!(
            Principal::key("n1", Role::Node, Some("gpu-1")).to_string(),
            r#"key "n1" (role node, node gpu-1)"#
        );
        assert_eq!(Principal::Anonymous.role(), None);
        assert_eq!(Principal::Anonymous.key_name(), None);
    }
}
