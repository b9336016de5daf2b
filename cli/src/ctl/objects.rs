//! Reads and writes of any stored kind, as JSON values: what the verbs that
//! take a kind at run time (`apply`, `delete`, `get -o yaml`) need.

use herd_api::{ApiKey, Event, Lease, ModelAssignment, Node, Secret};
use herd_client::{Client, Error, ListParams, PostParams};
use serde_json::Value;

use super::kind::Kind;

/// Runs `$body` with `$K` standing for the Rust type of `$kind`.
macro_rules! with_kind {
    ($kind:expr, $K:ident => $body:expr) => {
        match $kind {
            Kind::Node => {
                type $K = Node;
                $body
            }
            Kind::ModelAssignment => {
                type $K = ModelAssignment;
                $body
            }
            Kind::Event => {
                type $K = Event;
                $body
            }
            Kind::ApiKey => {
                type $K = ApiKey;
                $body
            }
            Kind::Secret => {
                type $K = Secret;
                $body
            }
            Kind::Lease => {
                type $K = Lease;
                $body
            }
            Kind::Request => Err(Error::InvalidRequest(
                "requests are read-only: they are the proxy's history".to_owned(),
            )),
        }
    };
}

fn value<T: serde::Serialize>(obj: &T) -> Result<Value, Error> {
    serde_json::to_value(obj).map_err(|e| Error::InvalidRequest(format!("encoding: {e}")))
}

fn params(dry_run: bool) -> PostParams {
    if dry_run {
        PostParams::dry_run()
    } else {
        PostParams::default()
    }
}

pub async fn get(client: &Client, kind: Kind, name: &str) -> Result<Option<Value>, Error> {
    with_kind!(kind, K => {
        match client.api::<K>().get_opt(name).await? {
            Some(obj) => Ok(Some(value(&obj)?)),
            None => Ok(None),
        }
    })
}

pub async fn list(
    client: &Client,
    kind: Kind,
    selector: Option<&str>,
) -> Result<Vec<Value>, Error> {
    let lp = ListParams {
        label_selector: selector.map(str::to_owned),
    };
    with_kind!(kind, K => {
        client.api::<K>().list(&lp).await?.items.iter().map(value).collect()
    })
}

/// Creates the object `body` describes (already checked to decode as its kind).
pub async fn create(
    client: &Client,
    kind: Kind,
    body: &Value,
    dry_run: bool,
) -> Result<Value, Error> {
    with_kind!(kind, K => {
        let obj: K = serde_json::from_value(body.clone())
            .map_err(|e| Error::InvalidRequest(format!("{}: {e}", kind.kind_name())))?;
        value(&client.api::<K>().create(&params(dry_run), &obj).await?)
    })
}

/// JSON merge patch of spec, labels and annotations.
pub async fn patch(
    client: &Client,
    kind: Kind,
    name: &str,
    patch: &Value,
    dry_run: bool,
) -> Result<Value, Error> {
    with_kind!(kind, K => {
        value(&client.api::<K>().patch(name, &params(dry_run), patch).await?)
    })
}

pub async fn delete(client: &Client, kind: Kind, name: &str) -> Result<Value, Error> {
    with_kind!(kind, K => {
        value(&client.api::<K>().delete(name).await?)
    })
}

/// The object's `metadata.resourceVersion`.
pub fn revision(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
}
