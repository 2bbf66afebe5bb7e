//! The AWS SDK configuration shared by every AWS client of a run (EC2, and S3 for shared state).
//!
//! A run must not stall on the instance-metadata service when it is not on EC2: the region is
//! resolved once, from the config, the environment, the profile, and only then IMDS, through an IMDS
//! client with short timeouts and one attempt; the credentials chain is handed that region so it
//! does not look it up again. `AWS_EC2_METADATA_DISABLED=true` skips IMDS entirely.

use std::time::Duration;

use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::imds;
use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

use crate::config::AwsConfig;

/// The AWS configuration could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum NoRegion {
    #[error(
        "no AWS region configured: set `[aws] region` in the config, or AWS_REGION in the environment (`--region` is for a run without `--config`)"
    )]
    Missing,
    /// `AWS_PROFILE` names a profile no AWS file has: the SDK would carry on silently without
    /// it and fail later with a misleading "no region" or "no credentials".
    #[error(
        "AWS profile `{profile}` (from AWS_PROFILE) is in neither `{}` nor `{}`: fix AWS_PROFILE, or unset it to use the default chain",
        config.display(),
        credentials.display()
    )]
    UnknownProfile {
        profile: String,
        config: std::path::PathBuf,
        credentials: std::path::PathBuf,
    },
}

/// Checks that the profile `AWS_PROFILE` names exists in the AWS config or credentials file
/// (`AWS_CONFIG_FILE`, `AWS_SHARED_CREDENTIALS_FILE`, by default under `~/.aws`).
fn check_profile() -> Result<(), NoRegion> {
    let Some(profile) = std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let home = std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_default();
    let file = |variable: &str, default: &str| {
        std::env::var_os(variable)
            .map_or_else(|| home.join(".aws").join(default), std::path::PathBuf::from)
    };
    let (config, credentials) = (
        file("AWS_CONFIG_FILE", "config"),
        file("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
    );
    let has_section = |path: &std::path::Path, names: &[String]| {
        crate::fs_atomic::read_text(path, 1024 * 1024).is_ok_and(|text| {
            text.lines().any(|line| {
                line.trim()
                    .strip_prefix('[')
                    .and_then(|rest| rest.strip_suffix(']'))
                    .is_some_and(|section| names.iter().any(|name| section.trim() == name))
            })
        })
    };
    let in_config = has_section(&config, &[format!("profile {profile}"), profile.clone()]);
    if in_config || has_section(&credentials, std::slice::from_ref(&profile)) {
        Ok(())
    } else {
        Err(NoRegion::UnknownProfile {
            profile,
            config,
            credentials,
        })
    }
}

/// The most one EC2 call may take: every attempt, and the standard retry mode's longest backoff
/// between them (1 s, doubling, at most 20 s; jitter only shortens it). With the defaults, 48 s.
fn operation_timeout(aws: &AwsConfig) -> Duration {
    let backoff: u64 = (1..aws.max_attempts)
        .map(|n| (1u64 << (n - 1)).min(20))
        .sum();
    aws.attempt_timeout * aws.max_attempts + Duration::from_secs(backoff)
}

/// The SDK configuration from `[aws]` and the standard environment / profile chain.
pub(crate) async fn sdk_config(aws: &AwsConfig) -> Result<SdkConfig, NoRegion> {
    check_profile()?;
    // IMDS answers in about a millisecond on EC2; elsewhere nothing answers, so fail fast.
    let imds_client = imds::Client::builder()
        .connect_timeout(Duration::from_millis(250))
        .read_timeout(Duration::from_secs(1))
        .max_attempts(1)
        .build();
    let region = match &aws.region {
        Some(region) => Region::new(region.clone()),
        None => RegionProviderChain::first_try(
            aws_config::environment::EnvironmentVariableRegionProvider::new(),
        )
        .or_else(aws_config::profile::ProfileFileRegionProvider::new())
        .or_else(
            imds::region::ImdsRegionProvider::builder()
                .imds_client(imds_client.clone())
                .build(),
        )
        .region()
        .await
        .ok_or(NoRegion::Missing)?,
    };
    let credentials = DefaultCredentialsChain::builder()
        .region(region.clone())
        .imds_client(imds_client)
        .build()
        .await;
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .credentials_provider(credentials)
        .retry_config(RetryConfig::standard().with_max_attempts(aws.max_attempts))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5).min(aws.attempt_timeout))
                .operation_attempt_timeout(aws.attempt_timeout)
                .operation_timeout(operation_timeout(aws))
                .build(),
        );
    if let Some(endpoint_url) = &aws.endpoint_url {
        loader = loader.endpoint_url(endpoint_url);
    }
    Ok(loader.load().await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_aws_call_is_bounded_by_its_attempts_and_backoff() {
        let aws = |max_attempts, attempt_timeout_s| AwsConfig {
            max_attempts,
            attempt_timeout: Duration::from_secs(attempt_timeout_s),
            ..AwsConfig::default()
        };
        assert_eq!(
            operation_timeout(&AwsConfig::default()),
            Duration::from_secs(48)
        );
        assert_eq!(operation_timeout(&aws(1, 5)), Duration::from_secs(5));
        assert_eq!(
            operation_timeout(&aws(10, 1)),
            Duration::from_secs(10 + 1 + 2 + 4 + 8 + 16 + 20 * 4)
        );
    }
}
