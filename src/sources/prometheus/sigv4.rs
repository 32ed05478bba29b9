//! AWS SigV4 signing for Amazon Managed Service for Prometheus (service `aps`): credentials
//! from the AWS default chain the AWS backends use (`aws.profile`, `aws.region`; environment,
//! profiles, SSO, instance and container roles, web identity), cached until shortly before they
//! expire; each request signed with the `aws-sigv4` crate (the SDK's own signer), its body
//! hashed into `x-amz-content-sha256`.

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
};
use aws_sigv4::sign::v4;

use super::config::{Sigv4Config, KEY};
use crate::config::AwsConfig;
use crate::error::{Error, Result};

/// Credentials are fetched again when they expire within this long.
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

/// Signs requests for one region and service.
pub struct Sigv4 {
    provider: SharedCredentialsProvider,
    region: String,
    service: String,
    /// The config key errors name (`sources.metrics.prometheus.sigv4`, `aws`).
    key: String,
    cached: tokio::sync::Mutex<Option<Credentials>>,
}

impl std::fmt::Debug for Sigv4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sigv4")
            .field("region", &self.region)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl Sigv4 {
    /// The AWS default chain, as the AWS backends load it; the region from
    /// `sources.metrics.prometheus.sigv4.region`, else `aws.region`, else the chain's.
    pub async fn from_chain(aws: &AwsConfig, cfg: &Sigv4Config) -> Result<Sigv4> {
        let sdk = crate::sources::aws::load_sdk_config(aws).await;
        let region = cfg
            .region
            .clone()
            .or_else(|| sdk.region().map(|r| r.to_string()))
            .ok_or_else(|| {
                Error::Config(vec![format!(
                    "{KEY}.sigv4.region: no region (set it, or aws.region, AWS_REGION or a profile region)"
                )])
            })?;
        let provider = sdk.credentials_provider().ok_or_else(|| {
            Error::Config(vec![format!(
                "{KEY}.sigv4: no AWS credentials provider could be set up from the default chain"
            )])
        })?;
        Ok(Sigv4::new(
            provider,
            &region,
            &cfg.service,
            &format!("{KEY}.sigv4"),
        ))
    }

    /// A signer over any credentials provider (an AWS target's, for services without an SDK
    /// client in the build); `key` is the config key its errors name.
    pub fn new(
        provider: SharedCredentialsProvider,
        region: &str,
        service: &str,
        key: &str,
    ) -> Sigv4 {
        Sigv4 {
            provider,
            region: region.to_string(),
            service: service.to_string(),
            key: key.to_string(),
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// Fixed credentials (tests, and callers that hold their own).
    pub fn from_static(
        access_key_id: &str,
        secret_access_key: &str,
        region: &str,
        service: &str,
    ) -> Sigv4 {
        let creds = Credentials::new(access_key_id, secret_access_key, None, None, "epitaph");
        Sigv4::new(
            SharedCredentialsProvider::new(creds),
            region,
            service,
            &format!("{KEY}.sigv4"),
        )
    }

    async fn credentials(&self) -> Result<Credentials> {
        let mut cached = self.cached.lock().await;
        let fresh = |c: &Credentials| match c.expiry() {
            None => true,
            Some(e) => e > SystemTime::now() + REFRESH_BEFORE_EXPIRY,
        };
        if let Some(c) = cached.as_ref().filter(|c| fresh(c)) {
            return Ok(c.clone());
        }
        let c = self.provider.provide_credentials().await.map_err(|e| {
            Error::source(
                self.key.clone(),
                format!(
                    "no AWS credentials: {}",
                    crate::sources::aws::error_chain(&e)
                ),
            )
        })?;
        *cached = Some(c.clone());
        Ok(c)
    }

    /// The headers to add to a request (`authorization`, `x-amz-date`,
    /// `x-amz-content-sha256`, and `x-amz-security-token` for temporary credentials).
    /// `headers` are the request's own headers to sign with it.
    pub async fn headers(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<(String, String)>> {
        let creds = self.credentials().await?;
        sign_at(
            &creds,
            &self.region,
            &self.service,
            SystemTime::now(),
            method,
            url,
            headers,
            body,
        )
        .map_err(|e| Error::source(self.key.clone(), e))
    }
}

/// Credentials in hand, signing each request at the moment it is made: a request sent again
/// on retry is signed again (a signature is only accepted for a few minutes).
pub struct ReadySigner {
    creds: Credentials,
    region: String,
    service: String,
}

impl Sigv4 {
    /// The credentials (cached), ready to sign with without waiting.
    pub async fn ready(&self) -> Result<ReadySigner> {
        Ok(ReadySigner {
            creds: self.credentials().await?,
            region: self.region.clone(),
            service: self.service.clone(),
        })
    }
}

impl ReadySigner {
    /// The headers to add to a request signed now (as [`Sigv4::headers`]).
    pub fn headers(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::result::Result<Vec<(String, String)>, String> {
        sign_at(
            &self.creds,
            &self.region,
            &self.service,
            SystemTime::now(),
            method,
            url,
            headers,
            body,
        )
    }
}

/// Signs one request at `time`: the headers to add. Pure (no clock, no credentials chain).
#[allow(clippy::too_many_arguments)]
pub fn sign_at(
    creds: &Credentials,
    region: &str,
    service: &str,
    time: SystemTime,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::result::Result<Vec<(String, String)>, String> {
    let identity = creds.clone().into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| format!("SigV4 parameters: {e}"))?
        .into();
    let request = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| format!("SigV4: cannot sign this request: {e}"))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| format!("SigV4 signing failed: {e}"))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's own SigV4 test suite, case `post-x-www-form-urlencoded` (shipped with the
    /// aws-sigv4 crate in `aws-signing-test-suite/v4/`): the documented signature for a
    /// form-encoded POST — the shape of a `query_range` request.
    #[test]
    fn a_form_post_gets_the_documented_signature() {
        let creds = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        );
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160); // 2015-08-30T12:36:00Z
        let headers = sign_at(
            &creds,
            "us-east-1",
            "service",
            time,
            "POST",
            "https://example.amazonaws.com/",
            &[
                ("content-length", "13"),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            b"Param1=value1",
        )
        .unwrap();
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
        };
        assert_eq!(
            get("authorization"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=content-length;content-type;host;x-amz-content-sha256;x-amz-date, Signature=d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b"
        );
        assert_eq!(get("x-amz-date"), "20150830T123600Z");
        assert_eq!(
            get("x-amz-content-sha256"),
            "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"
        );
    }
}
