//! Service information: what a tenant's coredms, daas or broker is and where it answers, as
//! published in etcd. Versioned by its `schema` field; refused with the field and the reason.

use crate::names;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The schema version this host reads and writes.
pub const SERVICE_SCHEMA: &str = "mysimbdp.service/v1";

/// What kind of service an entry describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    /// A core data service: the MongoDB a tenant's documents land in.
    Coredms,
    /// A data-as-a-service endpoint in front of a coredms.
    Daas,
    /// A message broker.
    Broker,
}

impl ServiceKind {
    /// Its name in keys and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Coredms => "coredms",
            Self::Daas => "daas",
            Self::Broker => "broker",
        }
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Health as last reported by whoever publishes the entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServiceStatus {
    /// Serving.
    #[default]
    Healthy,
    /// Serving, worse than usual: used when no healthy entry exists.
    Degraded,
    /// Being drained or upgraded: not used for new work.
    Maintenance,
    /// Not serving: not used.
    Down,
}

/// Where a service answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Endpoints {
    /// Connection URI without any secret, e.g. `mongodb://db1:27017,db2:27017/?replicaSet=rs1`.
    pub uri: String,
    /// The database (coredms): where the tenant's documents go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// The replica set, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_set: Option<String>,
    /// The hosts, `host:port`, for people and tools (the URI is what is used).
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// One published service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "mysimbdp service information")]
pub struct ServiceInfo {
    /// The schema version: `mysimbdp.service/v1`.
    pub schema: String,
    /// The tenant it serves.
    pub tenant: String,
    /// coredms, daas or broker.
    pub kind: ServiceKind,
    /// Its id among the tenant's services of this kind.
    pub id: String,
    /// The wire protocol: `mongodb` for a coredms, `amqp`, `https`, ….
    pub protocol: String,
    /// The server's version, e.g. `6.0.5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Where it answers.
    pub endpoints: Endpoints,
    /// Health.
    #[serde(default)]
    pub status: ServiceStatus,
    /// Region, e.g. `eu-west-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Free-form labels.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Where the credentials are, never the credentials: `env:NAME` (a variable of every
    /// host) or `file:/absolute/path`. The secret is the password of the URI's user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<String>,
    /// Set on first publication (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Set on every publication (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

/// A refused entry: the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ServiceError {
    /// Dotted path of the field, e.g. `endpoints.uri`.
    pub field: String,
    /// Why.
    pub reason: String,
}

fn refuse(field: &str, reason: impl Into<String>) -> ServiceError {
    ServiceError {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

impl ServiceInfo {
    /// Parses JSON or TOML (by `toml`), naming the field of the first error.
    pub fn parse(text: &str, toml: bool) -> Result<Self, ServiceError> {
        let located = |path: String, reason: String| {
            let field = if path == "." { String::new() } else { path };
            refuse(&field, reason)
        };
        if toml {
            let de = toml::Deserializer::parse(text).map_err(|e| refuse("", e.message()))?;
            serde_path_to_error::deserialize(de)
                .map_err(|e| located(e.path().to_string(), e.into_inner().message().to_owned()))
        } else {
            let mut de = serde_json::Deserializer::from_str(text);
            serde_path_to_error::deserialize(&mut de)
                .map_err(|e| located(e.path().to_string(), e.into_inner().to_string()))
        }
    }

    /// Checks every field; a coredms must be a MongoDB URI without secrets, with a database.
    pub fn validate(&self) -> Result<(), ServiceError> {
        if self.schema != SERVICE_SCHEMA {
            return Err(refuse(
                "schema",
                format!("{:?} is not {SERVICE_SCHEMA:?}", self.schema),
            ));
        }
        names::tenant_id(&self.tenant).map_err(|e| refuse("tenant", e.to_string()))?;
        names::app_name(&self.id)
            .map_err(|e| refuse("id", e.to_string().replace("app name", "service id")))?;
        if self.protocol.is_empty() {
            return Err(refuse("protocol", "is empty"));
        }
        let uri = &self.endpoints.uri;
        let Some((scheme, rest)) = uri.split_once("://") else {
            return Err(refuse(
                "endpoints.uri",
                format!("{uri:?} is not a URI like mongodb://host:27017"),
            ));
        };
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        if authority.is_empty() {
            return Err(refuse("endpoints.uri", "has no host"));
        }
        if let Some((credentials, _)) = authority.rsplit_once('@')
            && credentials.contains(':')
        {
            return Err(refuse(
                "endpoints.uri",
                "carries a password: publish the user only and point secret_ref at the password",
            ));
        }
        if self.kind == ServiceKind::Coredms {
            if self.protocol != "mongodb" {
                return Err(refuse(
                    "protocol",
                    format!("a coredms speaks mongodb, not {:?}", self.protocol),
                ));
            }
            if scheme != "mongodb" && scheme != "mongodb+srv" {
                return Err(refuse(
                    "endpoints.uri",
                    format!("a coredms URI is mongodb:// or mongodb+srv://, not {scheme}://"),
                ));
            }
            match &self.endpoints.database {
                None => {
                    return Err(refuse(
                        "endpoints.database",
                        "a coredms names the database the tenant's documents go to",
                    ));
                }
                Some(db) if !names::is_database_name(db) => {
                    return Err(refuse(
                        "endpoints.database",
                        format!("{db:?} is not a valid MongoDB database name"),
                    ));
                }
                Some(_) => {}
            }
        }
        for (i, host) in self.endpoints.hosts.iter().enumerate() {
            let valid = host
                .rsplit_once(':')
                .is_some_and(|(name, port)| !name.is_empty() && port.parse::<u16>().is_ok());
            if !valid {
                return Err(refuse(
                    &format!("endpoints.hosts[{i}]"),
                    format!("{host:?} is not host:port"),
                ));
            }
        }
        if let Some(reference) = &self.secret_ref {
            let valid = match reference.split_once(':') {
                Some(("env", name)) => {
                    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                }
                Some(("file", path)) => path.starts_with('/'),
                _ => false,
            };
            if !valid {
                return Err(refuse(
                    "secret_ref",
                    format!("{reference:?} is not env:NAME or file:/absolute/path"),
                ));
            }
        }
        Ok(())
    }

    /// Whether new work may use it.
    pub fn usable(&self) -> bool {
        matches!(
            self.status,
            ServiceStatus::Healthy | ServiceStatus::Degraded
        )
    }

    /// The JSON Schema of service information.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(ServiceInfo)).unwrap_or_default()
    }
}

/// Reads the secret a `secret_ref` points at.
pub fn read_secret(reference: &str) -> Result<String, String> {
    match reference.split_once(':') {
        Some(("env", name)) => std::env::var(name).map_err(|_| {
            format!("secret_ref {reference}: the variable {name} is not set on this host")
        }),
        Some(("file", path)) => std::fs::read_to_string(path)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
            .map_err(|e| format!("secret_ref {reference}: {e}")),
        _ => Err(format!(
            "secret_ref {reference:?} is not env:NAME or file:/path"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> ServiceInfo {
        ServiceInfo::parse(
            include_str!("../../../config/services/acme-coredms.json"),
            false,
        )
        .unwrap()
    }

    #[test]
    fn the_documented_example_is_valid() {
        let info = example();
        info.validate().unwrap();
        assert_eq!(info.kind, ServiceKind::Coredms);
        let toml = ServiceInfo::parse(
            include_str!("../../../config/services/globex-coredms.toml"),
            true,
        )
        .unwrap();
        toml.validate().unwrap();
    }

    #[test]
    fn the_published_schema_is_current() {
        let published: serde_json::Value =
            serde_json::from_str(include_str!("../../../docs/service-info.schema.json")).unwrap();
        assert_eq!(
            published,
            ServiceInfo::json_schema(),
            "regenerate: cargo run -p mysimbdp-host -- registry schema > docs/service-info.schema.json"
        );
    }

    #[test]
    fn bad_entries_are_refused_by_field() {
        type Spoil = dyn Fn(&mut ServiceInfo);
        let cases: [(&Spoil, &str); 8] = [
            (&|s| s.schema = "v0".into(), "schema"),
            (&|s| s.tenant = "Acme".into(), "tenant"),
            (
                &|s| s.endpoints.uri = "mongodb://u:pw@h:1/".into(),
                "endpoints.uri",
            ),
            (&|s| s.endpoints.uri = "http://h:1".into(), "endpoints.uri"),
            (&|s| s.endpoints.database = None, "endpoints.database"),
            (
                &|s| s.endpoints.hosts = vec!["h".into()],
                "endpoints.hosts[0]",
            ),
            (&|s| s.secret_ref = Some("vault:x".into()), "secret_ref"),
            (&|s| s.protocol = "amqp".into(), "protocol"),
        ];
        for (spoil, field) in cases {
            let mut info = example();
            spoil(&mut info);
            assert_eq!(info.validate().unwrap_err().field, field);
        }
        let error = ServiceInfo::parse(r#"{"schema": 1}"#, false).unwrap_err();
        assert_eq!(error.field, "schema");
        let error = ServiceInfo::parse("schema = \"x\"\nport = 1\n", true).unwrap_err();
        assert!(
            error.reason.contains("port") || error.field.contains("port"),
            "{error}"
        );
    }

    #[test]
    fn secrets_come_from_the_environment_or_a_file() {
        let path = std::env::temp_dir().join(format!("secret-{}", std::process::id()));
        std::fs::write(&path, "s3cret\n").unwrap();
        assert_eq!(
            read_secret(&format!("file:{}", path.display())).unwrap(),
            "s3cret"
        );
        assert!(read_secret("env:MYSIMBDP_SURELY_UNSET_VARIABLE").is_err());
        std::fs::remove_file(path).unwrap();
    }
}
