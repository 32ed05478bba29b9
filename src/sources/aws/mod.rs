//! The `aws` backend: Auto Scaling activity and inventory, CloudWatch Logs last words, and
//! CloudWatch memory metrics.
//!
//! Every API is spoken by hand over SigV4-signed HTTP (`signed.rs` over `sources::http`), no
//! SDK service crate: CloudWatch Logs (`logs_api.rs`, JSON 1.1), Auto Scaling
//! (`autoscaling.rs`), CloudWatch (`cloudwatch.rs`) and EC2 (`ec2.rs`) over their Query APIs
//! (`query.rs` reads the answers): a few calls and fields each, and the SDK crates are the
//! largest of a cold build. The SDK's configuration and credential chain (aws-config) stay.
//! One module per API; `activities.rs`, `logs.rs` (with `logs_probe.rs`, its `doctor` probe)
//! and `metrics.rs` are the sources built on them.
//!
//! Credentials come from the standard chain (environment, profiles, SSO, instance and container
//! roles, web identity for IRSA); `aws.targets` adds regions and accounts (assumed roles).
//! Every client retries throttling, 5xx and timeouts with exponential backoff and jitter
//! (`aws.max_attempts`) under per-call and per-attempt timeouts; every call is counted by
//! operation for the scan summary. Endpoints can be overridden with `aws.endpoint_url`,
//! `AWS_ENDPOINT_URL` or `AWS_ENDPOINT_URL_<SERVICE>`.

mod activities;
pub mod autoscaling;
pub mod cloudwatch;
pub mod credentials_http;
pub mod ec2;
mod logs;
pub mod logs_api;
mod logs_probe;
mod metrics;
pub mod query;
pub mod signed;

pub use activities::AwsActivities;
pub use logs::AwsLogs;
pub use logs_probe::probe_logs;
pub use metrics::AwsMetrics;

use std::sync::Arc;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

use aws_credential_types::provider::{
    self as credentials, ProvideCredentials, SharedCredentialsProvider,
};
use aws_credential_types::Credentials;

use crate::config::{parse_target, AwsConfig};
use crate::error::{Error, Result};
pub use crate::sources::CallCounter;

/// One place to read from: a region, with its own credentials when a role is assumed.
#[derive(Clone)]
pub struct Target {
    /// "us-east-1" or "arn:aws:iam::…:role/…@eu-west-1": recorded as `Termination::origin`.
    pub name: String,
    /// Auto Scaling over its Query API (no SDK crate), with this target's credentials.
    pub autoscaling: Arc<autoscaling::AutoScaling>,
    /// CloudWatch Logs over its JSON API (no SDK crate), with this target's credentials.
    pub logs: Arc<logs_api::Logs>,
    /// CloudWatch over its Query API (no SDK crate), with this target's credentials.
    pub cloudwatch: Arc<cloudwatch::CloudWatch>,
    /// EC2 DescribeInstances over its Query API (no SDK crate), with this target's credentials.
    pub ec2: Option<Arc<ec2::Ec2>>,
    /// The region and endpoint override the clients use (`epitaph doctor` names them).
    pub info: crate::sources::probe::TargetInfo,
}

/// The clients of every target, shared by the three AWS sources.
#[derive(Clone)]
pub struct AwsContext {
    pub targets: Arc<Vec<Target>>,
}

impl AwsContext {
    /// Loads the standard chain once, then one set of clients per target.
    pub async fn load(cfg: &AwsConfig) -> Result<Self> {
        let base = load_sdk_config(cfg).await;

        let mut targets = Vec::new();
        if cfg.targets.is_empty() {
            let region = base.region().map(|r| r.to_string()).ok_or_else(|| {
                Error::Config(vec![
                    "aws.region: no region configured (set aws.region, aws.targets, AWS_REGION or a profile region)".into(),
                ])
            })?;
            targets.push(Target::new(region, &base, cfg)?);
        }
        for t in &cfg.targets {
            let target =
                parse_target(t).map_err(|e| Error::Config(vec![format!("aws.targets: {e}")]))?;
            let mut conf = base.to_builder().region(Region::new(target.region.clone()));
            if let Some(role) = &target.role_arn {
                let mut builder = aws_config::sts::AssumeRoleProvider::builder(role.clone())
                    .session_name(&cfg.session_name)
                    .session_length(cfg.session_duration().to_std().unwrap_or_default())
                    .region(Region::new(target.region.clone()));
                if let Some(id) = &cfg.external_id {
                    builder = builder.external_id(id);
                }
                let provider = builder.configure(&base).build().await;
                conf = conf.credentials_provider(SharedCredentialsProvider::new(provider));
            }
            targets.push(Target::new(t.clone(), &conf.build(), cfg)?);
        }
        Ok(AwsContext {
            targets: Arc::new(targets),
        })
    }

    /// The target an instance came from (the first one when unknown).
    pub fn target(&self, origin: Option<&str>) -> Option<&Target> {
        origin
            .and_then(|o| self.targets.iter().find(|t| t.name == o))
            .or_else(|| self.targets.first())
    }
}

/// The standard chain (credentials, region) with `aws.region`, `aws.profile`,
/// `aws.endpoint_url`, retries and timeouts applied: the one configuration every target —
/// and the Prometheus backend's SigV4 signer — starts from.
pub async fn load_sdk_config(cfg: &AwsConfig) -> SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .operation_timeout(cfg.call_timeout().to_std().unwrap_or_default())
        .operation_attempt_timeout(cfg.attempt_timeout().to_std().unwrap_or_default())
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .retry_config(RetryConfig::standard().with_max_attempts(cfg.max_attempts))
        .timeout_config(timeouts);
    if let Some(r) = &cfg.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(p) = &cfg.profile {
        loader = loader.profile_name(p);
    }
    if let Some(e) = &cfg.endpoint_url {
        loader = loader.endpoint_url(e);
    }
    loader.load().await
}

impl Target {
    /// The clients of one target named `name` (as in `aws.targets`), from its configuration
    /// (region, credentials, endpoint override) and `[aws]`'s retries and timeouts.
    pub fn new(name: String, conf: &SdkConfig, aws: &AwsConfig) -> Result<Target> {
        clients(name, conf, aws)
    }
}

fn clients(name: String, conf: &SdkConfig, aws: &AwsConfig) -> Result<Target> {
    // One set of credentials per target, shared by its clients: a role is assumed once, not
    // once per service, and again shortly before its session ends.
    let conf = &match conf.credentials_provider() {
        Some(p) => conf
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(CachedCredentials::new(p)))
            .build(),
        None => conf.clone(),
    };
    let info = crate::sources::probe::TargetInfo {
        name: name.clone(),
        region: conf.region().map(|r| r.to_string()).unwrap_or_default(),
        endpoint: conf.endpoint_url().map(str::to_string),
    };
    let ec2 = match conf.credentials_provider() {
        Some(provider) => {
            let signer =
                crate::sources::prometheus::Sigv4::new(provider, &info.region, "ec2", "aws");
            let http = crate::sources::http::HttpClient::new(
                "ec2",
                &crate::sources::http::HttpSettings {
                    timeout: aws.attempt_timeout().to_std().unwrap_or_default(),
                    max_attempts: aws.max_attempts,
                    concurrency: aws.api_concurrency,
                    ca_file: None,
                },
            )?
            .with_limiter(Arc::new(crate::sources::ratelimit::RateLimiter::aws(
                &aws.rate_limits,
            )));
            Some(Arc::new(ec2::Ec2::new(
                signer,
                &info.region,
                info.endpoint.as_deref(),
                http,
            )))
        }
        None => None,
    };
    Ok(Target {
        name,
        info,
        autoscaling: Arc::new(autoscaling::AutoScaling::new(conf, aws)?),
        logs: Arc::new(logs_api::Logs::new(conf, aws)?),
        cloudwatch: Arc::new(cloudwatch::CloudWatch::new(conf, aws)?),
        ec2,
    })
}

/// A credentials provider's answer kept until shortly before it expires
/// ([`REFRESH_BEFORE_EXPIRY`](crate::sources::prometheus::REFRESH_BEFORE_EXPIRY)), for every
/// client of a target: the SDK's providers do not cache (AssumeRole asks STS every time).
/// Credentials without an expiry (static keys) are kept for good. A failure is not kept: the
/// next request asks again.
#[derive(Debug)]
pub struct CachedCredentials {
    inner: SharedCredentialsProvider,
    cached: tokio::sync::Mutex<Option<Credentials>>,
}

impl CachedCredentials {
    pub fn new(inner: SharedCredentialsProvider) -> Self {
        CachedCredentials {
            inner,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    async fn get(&self) -> credentials::Result {
        let mut cached = self.cached.lock().await;
        let fresh = |c: &Credentials| match c.expiry() {
            None => true,
            Some(e) => {
                e > std::time::SystemTime::now() + crate::sources::prometheus::REFRESH_BEFORE_EXPIRY
            }
        };
        if let Some(c) = cached.as_ref().filter(|c| fresh(c)) {
            return Ok(c.clone());
        }
        let c = self.inner.provide_credentials().await?;
        *cached = Some(c.clone());
        Ok(c)
    }
}

impl ProvideCredentials for CachedCredentials {
    fn provide_credentials<'a>(&'a self) -> credentials::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        credentials::future::ProvideCredentials::new(self.get())
    }
}

/// The SDK crates this backend is built on (configuration and credentials; no service
/// crate), for code that builds targets the same way: the AWS integration tests then need no
/// SDK dev-dependency, and a `--no-default-features` build compiles no SDK at all. The tests
/// seed moto through boto3.
pub mod sdk {
    pub use aws_config as config;
    pub use aws_credential_types as credential_types;
}

/// The HTTP client the SDK's credential providers (STS, SSO, IMDS) use: reqwest, the client
/// every other call goes through (`credentials_http`), instead of the SDK's own hyper-based one.
pub fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    credentials_http::http_client()
}

/// An error with its causes in one line ("no AWS credentials: …: …"): what the SDK's
/// credential providers say when they fail, never the credentials themselves.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, SystemTime};

    /// Hands out credentials expiring `lifetime` from now, counting how often it is asked.
    #[derive(Debug)]
    struct Counting {
        asked: Arc<AtomicUsize>,
        lifetime: Duration,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> credentials::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.asked.fetch_add(1, Ordering::SeqCst);
            credentials::future::ProvideCredentials::ready(Ok(Credentials::new(
                format!("ASIA{n}"),
                "secret",
                Some("token".into()),
                Some(SystemTime::now() + self.lifetime),
                "test",
            )))
        }
    }

    fn cached(lifetime: Duration) -> (CachedCredentials, Arc<AtomicUsize>) {
        let asked = Arc::new(AtomicUsize::new(0));
        let inner = SharedCredentialsProvider::new(Counting {
            asked: asked.clone(),
            lifetime,
        });
        (CachedCredentials::new(inner), asked)
    }

    #[tokio::test]
    async fn credentials_are_fetched_once_while_they_last() {
        let (c, asked) = cached(Duration::from_secs(3600));
        for _ in 0..5 {
            assert_eq!(
                c.provide_credentials().await.unwrap().access_key_id(),
                "ASIA0"
            );
        }
        assert_eq!(asked.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn credentials_about_to_expire_are_fetched_again() {
        // Inside the refresh margin: every request gets a new session.
        let (c, asked) = cached(Duration::from_secs(60));
        let first = c.provide_credentials().await.unwrap();
        let second = c.provide_credentials().await.unwrap();
        assert_ne!(first.access_key_id(), second.access_key_id());
        assert_eq!(asked.load(Ordering::SeqCst), 2);
    }
}
