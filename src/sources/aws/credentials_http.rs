//! The HTTP client of the AWS credential providers (STS AssumeRole and web identity for IRSA,
//! SSO, the instance metadata service, the container credentials endpoint): reqwest — the
//! client every other call of epitaph already goes through — behind the SDK's connector
//! traits, instead of the SDK's own hyper-based client (`aws-smithy-http-client`, tens of
//! seconds of every cold build for a handful of credential calls).
//!
//! Like the SDK's client, it uses no proxy (the metadata endpoints are link-local), applies
//! the connect and read timeouts the SDK asks for, and reports a timeout as a timeout and a
//! failed connection as an I/O error, so that the SDK's retries treat them as it always did.

use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    http_client_fn, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;

/// Connecting takes at most this long when the SDK names no connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A whole credential call takes at most this long when the SDK names no read timeout.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The client handed to `aws_config` (`load_sdk_config`).
pub fn http_client() -> SharedHttpClient {
    http_client_fn(|settings: &HttpConnectorSettings, _components| {
        SharedHttpConnector::new(Connector::new(settings))
    })
}

#[derive(Debug, Clone)]
struct Connector {
    client: Result<reqwest::Client, String>,
}

impl Connector {
    fn new(settings: &HttpConnectorSettings) -> Connector {
        let connect = settings
            .connect_timeout()
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let read = settings.read_timeout().unwrap_or(DEFAULT_READ_TIMEOUT);
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(connect)
            .timeout(connect + read)
            .user_agent(concat!("epitaph/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string());
        Connector { client }
    }
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.client.clone();
        HttpConnectorFuture::new(async move {
            let client = client.map_err(|e| ConnectorError::other(e.into(), None))?;
            let method = reqwest::Method::from_bytes(request.method().as_bytes())
                .map_err(|e| ConnectorError::user(e.into()))?;
            // Credential requests are small and held in memory; a streaming body would be a
            // caller this client does not serve.
            let body = request
                .body()
                .bytes()
                .ok_or_else(|| ConnectorError::user("a streaming request body".into()))?
                .to_vec();
            let mut builder = client.request(method, request.uri()).body(body);
            for (name, value) in request.headers().iter() {
                builder = builder.header(name, value);
            }
            let resp = builder.send().await.map_err(|e| {
                if e.is_timeout() {
                    ConnectorError::timeout(e.into())
                } else if e.is_connect() || e.is_request() {
                    ConnectorError::io(e.into())
                } else {
                    ConnectorError::other(e.into(), None)
                }
            })?;
            let status = StatusCode::try_from(resp.status().as_u16())
                .map_err(|e| ConnectorError::other(e.into(), None))?;
            let headers: Vec<(String, String)> = resp
                .headers()
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
                .collect();
            let bytes = resp.bytes().await.map_err(|e| {
                if e.is_timeout() {
                    ConnectorError::timeout(e.into())
                } else {
                    ConnectorError::io(e.into())
                }
            })?;
            let mut out = HttpResponse::new(status, SdkBody::from(bytes.to_vec()));
            for (k, v) in headers {
                let _ = out.headers_mut().try_insert(k, v);
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A credential call through the connector against a local server that answers like the
    /// container credentials endpoint: method, path, headers and body get there; status,
    /// headers and body come back.
    #[tokio::test]
    async fn a_request_goes_out_and_its_answer_comes_back() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            loop {
                let n = s.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
                if got.windows(4).any(|w| w == b"\r\n\r\n") && got.ends_with(b"ping") {
                    break;
                }
            }
            let body = r#"{"AccessKeyId":"AKID","SecretAccessKey":"x","Token":"t","Expiration":"2026-01-01T00:00:00Z"}"#;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-test: yes\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            s.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&got).to_string()
        });
        let settings = HttpConnectorSettings::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(5))
            .build();
        let connector = Connector::new(&settings);
        let mut req = HttpRequest::new(SdkBody::from("ping"));
        req.set_uri(format!("http://{addr}/v2/credentials/abc"))
            .unwrap();
        req.set_method("POST").unwrap();
        req.headers_mut().insert("authorization", "secret-token");
        let resp = connector.call(req).await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(resp.headers().get("x-test"), Some("yes"));
        assert!(std::str::from_utf8(resp.body().bytes().unwrap())
            .unwrap()
            .contains("AKID"));
        let seen = server.await.unwrap();
        assert!(
            seen.starts_with("POST /v2/credentials/abc HTTP/1.1"),
            "{seen}"
        );
        assert!(seen.contains("authorization: secret-token"), "{seen}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_io_error_the_sdk_retries() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let connector = Connector::new(&HttpConnectorSettings::builder().build());
        let mut req = HttpRequest::new(SdkBody::empty());
        req.set_uri(format!("http://127.0.0.1:{port}/")).unwrap();
        let e = connector.call(req).await.unwrap_err();
        assert!(e.is_io(), "{e:?}");
    }
}
