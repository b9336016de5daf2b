use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::FieldError;
use crate::meta::Timestamp;
use crate::resource::resource_object;

resource_object! {
    /// Who holds a role that one process at a time may hold (the controller),
    /// and until when. The holder renews it by a conditional update; another
    /// candidate takes it over once it has seen no renewal for
    /// `leaseDurationSeconds`.
    Lease { spec: LeaseSpec, status: LeaseStatus, kind: "Lease", plural: "leases", singular: "lease", short: [] }
}

/// The longest lease accepted: a holder that stopped without releasing it
/// blocks its role for at most this long.
pub const MAX_LEASE_SECONDS: u32 = 3600;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaseSpec {
    /// The identity of the holder; empty when released.
    #[serde(default)]
    pub holder: String,
    /// When the holder last renewed it (its own clock; for people to read:
    /// candidates time expiry on their own clocks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_time: Option<Timestamp>,
    /// How long after a renewal, unrenewed, the lease may be taken over.
    pub lease_duration_seconds: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeaseStatus {}

impl LeaseSpec {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.lease_duration_seconds == 0 || self.lease_duration_seconds > MAX_LEASE_SECONDS {
            errors.push(FieldError::invalid(
                "spec.leaseDurationSeconds",
                format!("must be between 1 and {MAX_LEASE_SECONDS}"),
            ));
        }
        if self.holder.len() > 253 {
            errors.push(FieldError::invalid(
                "spec.holder",
                "must be at most 253 bytes",
            ));
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Resource;

    #[test]
    fn lease_spec_rules() {
        let spec = |holder: &str, secs| LeaseSpec {
            holder: holder.into(),
            renew_time: None,
            lease_duration_seconds: secs,
        };
        for (case, s, fields) in [
            ("held", spec("server-a", 15), vec![]),
            ("released", spec("", 15), vec![]),
            (
                "no duration",
                spec("a", 0),
                vec!["spec.leaseDurationSeconds"],
            ),
            (
                "too long",
                spec("a", 3601),
                vec!["spec.leaseDurationSeconds"],
            ),
            (
                "long holder",
                spec(&"h".repeat(254), 15),
                vec!["spec.holder"],
            ),
        ] {
            let errors = Lease::new("controller", s).validate();
            let got: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
            assert_eq!(got, fields, "{case}");
        }
    }

    #[test]
    fn lease_wire_form() {
        let json = r#"{"apiVersion":"herd/v1","kind":"Lease","metadata":{"name":"controller"},
            "spec":{"holder":"a","renewTime":"2030-01-01T00:00:00Z","leaseDurationSeconds":15}}"#;
        let lease: Lease = serde_json::from_str(json).expect("parses");
        assert_eq!(lease.spec.holder, "a");
        assert_eq!(lease.spec.lease_duration_seconds, 15);
        assert!(serde_json::from_str::<Lease>(&json.replace("holder", "holdr")).is_err());
    }
}
