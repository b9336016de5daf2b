//! `herd create apikey NAME --role ROLE`: a new key, whose secret the server
//! returns once, in this answer, and never again.

use clap::{Args, Subcommand};
use herd_api::{ApiKey, ApiKeySpec, Resource, Role, Timestamp, parse_expiry};
use herd_client::PostParams;
use serde_json::Value;

use crate::ctl::args::ConnectArgs;
use crate::ctl::{block_on, errors, output};

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(subcommand)]
    pub what: CreateWhat,
}

#[derive(Subcommand, Debug)]
pub enum CreateWhat {
    /// A key for herd's API or its proxy; its secret is printed once.
    #[command(alias = "key")]
    Apikey(ApiKeyArgs),
}

#[derive(Args, Debug)]
pub struct ApiKeyArgs {
    /// The key's name (its object name).
    pub name: String,
    /// What the key may do: admin, viewer, controller, join, node or inference.
    #[arg(long, value_name = "ROLE")]
    pub role: Role,
    /// For a node key: the node it is bound to.
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    /// When the key stops working: a length (30d, 12h, 1w2d) or an RFC 3339 instant.
    #[arg(long, value_name = "WHEN")]
    pub expires: Option<String>,
    /// What the key is for.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub description: String,
}

/// The note that goes with a printed secret.
pub const SHOWN_ONCE: &str =
    "Store this key now: herd keeps only its hash and will not show it again.";

pub fn run(args: CreateArgs, connect: &ConnectArgs) -> anyhow::Result<()> {
    let CreateWhat::Apikey(args) = args.what;
    let key = api_key(&args, Timestamp::now()).map_err(anyhow::Error::msg)?;
    let client = connect.client()?;
    let created = block_on(async {
        client
            .api::<ApiKey>()
            .create(&PostParams::default(), &key)
            .await
    })?
    .map_err(|e| errors::client_error(&e, &connect.server))?;
    let secret = created
        .status
        .secret
        .as_ref()
        .map(|s| s.expose().to_owned())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "apikey/{} was created but the server sent no secret; delete it and create it again",
                created.metadata.name
            )
        })?;
    output::emit(&format!(
        "apikey/{} created\n{secret}\n",
        created.metadata.name
    ))?;
    eprintln!("{SHOWN_ONCE}");
    Ok(())
}

/// The object the flags describe.
pub fn api_key(args: &ApiKeyArgs, now: Timestamp) -> Result<ApiKey, String> {
    let expires_at = args
        .expires
        .as_deref()
        .map(|e| parse_expiry(e, now).map_err(|why| format!("--expires: {why}")))
        .transpose()?;
    Ok(ApiKey::new(
        &args.name,
        ApiKeySpec {
            role: Some(args.role),
            node: args.node.clone(),
            expires_at,
            disabled: false,
            description: args.description.clone(),
        },
    ))
}

/// The secret a create response carries (`status.secret`), for `herd apply`
/// to print once.
pub fn secret_of(created: &Value) -> Option<&str> {
    created.pointer("/status/secret").and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(role: Role, node: Option<&str>, expires: Option<&str>) -> ApiKeyArgs {
        ApiKeyArgs {
            name: "ci".into(),
            role,
            node: node.map(str::to_owned),
            expires: expires.map(str::to_owned),
            description: "for CI".into(),
        }
    }

    #[test]
    fn flags_become_the_key() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().expect("ts");
        let key = api_key(&args(Role::Node, Some("gpu-1"), Some("30d")), now).expect("valid");
        assert_eq!(key.metadata.name, "ci");
        assert_eq!(key.spec.role, Some(Role::Node));
        assert_eq!(key.spec.node.as_deref(), Some("gpu-1"));
        assert_eq!(
            key.spec.expires_at,
            Some("2026-01-31T00:00:00Z".parse().expect("ts"))
        );
        assert_eq!(key.spec.description, "for CI");
        assert!(key.status.secret.is_none());

        let never = api_key(&args(Role::Viewer, None, None), now).expect("valid");
        assert_eq!(never.spec.expires_at, None);
        let err = api_key(&args(Role::Viewer, None, Some("soon")), now).expect_err("bad");
        assert!(err.starts_with("--expires:"), "{err}");
    }

    #[test]
    fn the_secret_of_a_create_response() {
        let created = serde_json::json!({"status": {"keyId": "abc", "secret": "herd_x"}});
        assert_eq!(secret_of(&created), Some("herd_x"));
        assert_eq!(secret_of(&serde_json::json!({"status": {}})), None);
    }
}
