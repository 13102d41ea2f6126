//! The API client of the CLI: bearer auth, JSON in and out, and the API's error shape turned
//! into one readable line.

use anyhow::{Context, Result, anyhow};
use clap::Args;
use mysimbdp_api::ErrorBody;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Where the API is and the operator's token (`mysimbdp tenant …`).
#[derive(Debug, Args)]
pub struct OperatorApi {
    /// The API's base URL.
    #[arg(long, env = "MYSIMBDP_API", default_value = "http://127.0.0.1:8080")]
    pub api: String,
    /// The operator's token.
    #[arg(long, env = "MYSIMBDP_OPERATOR_TOKEN", hide_env_values = true)]
    pub token: String,
    /// A PEM file of the CA that signed the API's certificate, trusted besides the system's
    /// (for an `https://` API with a private CA).
    #[arg(long, env = "MYSIMBDP_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Print the API's JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Where the API is and the tenant's token (`mysimbdp app upload|list|…`).
#[derive(Debug, Args)]
pub struct TenantApi {
    /// The API's base URL.
    #[arg(long, env = "MYSIMBDP_API", default_value = "http://127.0.0.1:8080")]
    pub api: String,
    /// The tenant's token (msbt_…).
    #[arg(long, env = "MYSIMBDP_TOKEN", hide_env_values = true)]
    pub token: String,
    /// A PEM file of the CA that signed the API's certificate, trusted besides the system's
    /// (for an `https://` API with a private CA), and the broker's (`stream publish` to an
    /// `amqps://` address).
    #[arg(long, env = "MYSIMBDP_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Print the API's JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// A client of one API with one token.
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    /// A client of `base` (e.g. `https://api.example:8443`), verifying an `https://` API's
    /// certificate against the system's roots and, if given, the CA in PEM file `ca_cert`.
    /// Nothing turns verification off.
    pub fn new(base: &str, token: &str, ca_cert: Option<&Path>) -> Result<Self> {
        let base = base.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            anyhow::bail!("--api {base:?} is not an http:// or https:// URL");
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("mysimbdp-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = ca_cert {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading --ca-cert {}", path.display()))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
                format!("--ca-cert {} is not a PEM certificate", path.display())
            })?;
            if certificates.is_empty() {
                anyhow::bail!("--ca-cert {} holds no PEM certificate", path.display());
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build().context("building the HTTP client")?;
        Ok(Self {
            http,
            base,
            token: token.to_owned(),
        })
    }

    /// A request to `path` (starting with `/`), authenticated.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// Sends a request and decodes the JSON answer, or turns the API's error into a message.
    pub async fn send<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T> {
        let response = self.execute(request).await?;
        let status = response.status();
        if status == StatusCode::NO_CONTENT {
            return serde_json::from_value(Value::Null).context("the API answered with no content");
        }
        response
            .json()
            .await
            .with_context(|| format!("reading the API's {status} answer"))
    }

    /// Sends a request that answers with no content.
    pub async fn send_empty(&self, request: RequestBuilder) -> Result<()> {
        self.execute(request).await.map(drop)
    }

    async fn execute(&self, request: RequestBuilder) -> Result<reqwest::Response> {
        let response = request.send().await.map_err(|e| {
            let reason = error_chain(&e);
            if reason.contains("certificate") || reason.contains("UnknownIssuer") {
                anyhow!(
                    "the mysimbdp API at {} presented a certificate this client does not trust \
                     ({reason}); if a private CA signed it, pass --ca-cert (or \
                     MYSIMBDP_CA_CERT) with that CA's PEM file",
                    self.base
                )
            } else if e.is_connect() {
                anyhow!(
                    "cannot reach the mysimbdp API at {}: is `mysimbdp serve` running there? ({reason})",
                    self.base
                )
            } else {
                anyhow!("calling the mysimbdp API at {}: {reason}", self.base)
            }
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        Err(anyhow!(describe_error(status, &body)))
    }
}

/// One line out of an error answer: `403 tenant_suspended: tenant "acme" is suspended`.
pub fn describe_error(status: StatusCode, body: &str) -> String {
    match serde_json::from_str::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => {
            let class = error.class.map(|c| format!(" [{c}]")).unwrap_or_default();
            format!(
                "{} {}{class}: {}",
                status.as_u16(),
                error.code,
                error.message
            )
        }
        // Not the API speaking (a proxy, say): its text as it is.
        Err(_) => format!("{status}: {}", body.trim()),
    }
}

/// Percent-encodes one path segment.
pub fn segment(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A JSON value for a table cell: strings bare, null as `-`.
pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// An optional text for a table cell: absent as `-`.
pub fn or_dash(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("-")
}

/// Prints a value as pretty JSON.
pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// An error and its sources as one line, each text once. reqwest's and lapin's own messages
/// say little ("error sending request"): the reason, a refused connection or an untrusted
/// certificate, is in the sources.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text = format!("{text}: {said}");
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_one_line() {
        let body = r#"{"error":{"status":422,"code":"app_refused","class":"out-of-fuel","message":"ran out"}}"#;
        assert_eq!(
            describe_error(StatusCode::UNPROCESSABLE_ENTITY, body),
            "422 app_refused [out-of-fuel]: ran out"
        );
        assert_eq!(
            describe_error(StatusCode::BAD_GATEWAY, "upstream down\n"),
            "502 Bad Gateway: upstream down"
        );
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("orders"), "orders");
        assert_eq!(segment("a b/../c"), "a%20b%2F..%2Fc");
    }
}
