//! The EC2 provider: the only module that sees `aws_sdk_ec2` types.
//!
//! It lists a pool's pending and running instances with `DescribeInstances`, every page, ANDing the
//! pool's filters. Security groups use the `instance.group-name` / `instance.group-id` filters (moto
//! answers a bare `group-name` filter with an HTTP 500).
//!
//! Its client is built from [`super::aws::sdk_config`].

use aws_config::retry::RetryConfig;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{
    Filter, Instance as Ec2Instance, InstanceStateName, InstanceType, LaunchTemplateSpecification,
    ResourceType, Tag, TagSpecification,
};

use super::{Cause, CloudError, CloudErrorKind, Operation, Provider, fatal_call};
use crate::config::scaling::{LaunchTemplateRef, TAG_LAUNCH_TOKEN, TAG_POOL};
use crate::config::{Launcher, PoolConfig};

/// Why an EC2 pool's launcher is not EC2's.
const NOT_EC2: &str = "an EC2 pool was given another provider's launcher";
use crate::model::{Instance, InstanceState};

/// An EC2 client for all pools of a run.
#[derive(Debug, Clone)]
pub(crate) struct Ec2 {
    client: Client,
}

impl Ec2 {
    /// A client for `endpoint_url` with fixed test credentials, for the benchmarks.
    #[cfg(feature = "testing")]
    pub(crate) fn for_endpoint(endpoint_url: &str) -> Ec2 {
        let config = aws_sdk_ec2::Config::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("eu-west-1"))
            .endpoint_url(endpoint_url)
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                "bench", "bench", None, None, "bench",
            ))
            .build();
        Ec2 {
            client: Client::from_conf(config),
        }
    }

    /// A client for the run's AWS configuration ([`super::aws::sdk_config`]).
    pub(crate) fn new(sdk: &aws_config::SdkConfig) -> Ec2 {
        Ec2 {
            client: Client::new(sdk),
        }
    }
}

/// DescribeInstances' largest `MaxResults`.
const MAX_PAGE_SIZE: i32 = 1000;

impl Ec2 {
    async fn describe(
        &self,
        pool: &PoolConfig,
        operation: Operation,
        filters: Vec<Filter>,
    ) -> Result<Vec<Instance>, CloudError> {
        // The largest page EC2 gives (fewest round trips); each page is converted and dropped
        // before the next is read, so only one page of the SDK's types is held at a time.
        let mut pages = self
            .client
            .describe_instances()
            .set_filters(Some(filters))
            .into_paginator()
            .page_size(MAX_PAGE_SIZE)
            .send();
        let mut instances = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|error| classify(&pool.name, operation, &error))?;
            instances.extend(
                page.reservations()
                    .iter()
                    .flat_map(aws_sdk_ec2::types::Reservation::instances)
                    .filter_map(convert),
            );
        }
        Ok(instances)
    }
}

/// The provider's calls for EC2 pools.
impl Provider for Ec2 {
    async fn list(&self, pool: &PoolConfig) -> Result<Vec<Instance>, CloudError> {
        let mut instances = if pool.scaling.is_some() {
            // What this tool launched is always seen, even if it does not match the filters;
            // both are asked at once.
            let (mut matching, tagged) = tokio::try_join!(
                self.list_matching(pool),
                self.describe(
                    pool,
                    Operation::List,
                    vec![
                        filter("instance-state-name", ["pending", "running"]),
                        filter(&format!("tag:{TAG_POOL}"), [pool.name.as_str()]),
                    ],
                ),
            )?;
            matching.extend(tagged);
            matching
        } else {
            self.list_matching(pool).await?
        };
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        instances.dedup_by(|a, b| a.id == b.id);
        Ok(instances)
    }

    async fn find_by_token(
        &self,
        pool: &PoolConfig,
        token: &str,
    ) -> Result<Vec<String>, CloudError> {
        let filters = vec![
            filter(
                "instance-state-name",
                ["pending", "running", "stopping", "stopped", "shutting-down"],
            ),
            filter(&format!("tag:{TAG_LAUNCH_TOKEN}"), [token]),
        ];
        let found = self.describe(pool, Operation::FindLaunch, filters).await?;
        Ok(found.into_iter().map(|instance| instance.id).collect())
    }

    async fn launch(
        &self,
        pool: &PoolConfig,
        launcher: &Launcher,
        count: u32,
        token: &str,
    ) -> Result<Vec<String>, CloudError> {
        let Launcher::Ec2(launch) = launcher else {
            return Err(fatal_call(pool, Operation::Launch, NOT_EC2));
        };
        let count = i32::try_from(count).unwrap_or(i32::MAX);
        let tags = launch
            .tags
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .chain([(TAG_POOL, pool.name.as_str()), (TAG_LAUNCH_TOKEN, token)])
            .fold(
                TagSpecification::builder().resource_type(ResourceType::Instance),
                |spec, (key, value)| spec.tags(Tag::builder().key(key).value(value).build()),
            )
            .build();
        let mut request = self
            .client
            .run_instances()
            .min_count(count)
            .max_count(count)
            .client_token(token)
            .tag_specifications(tags)
            .set_image_id(launch.image_id.clone())
            .set_instance_type(launch.instance_type.as_deref().map(InstanceType::from))
            .set_key_name(launch.key_name.clone());
        if let Some(template) = &launch.launch_template {
            let spec = match &template.reference {
                LaunchTemplateRef::Id(id) => {
                    LaunchTemplateSpecification::builder().launch_template_id(id)
                }
                LaunchTemplateRef::Name(name) => {
                    LaunchTemplateSpecification::builder().launch_template_name(name)
                }
            };
            request = request.launch_template(spec.set_version(template.version.clone()).build());
        }
        if !launch.security_group_ids.is_empty() {
            request = request.set_security_group_ids(Some(launch.security_group_ids.clone()));
        }
        if !launch.subnet_ids.is_empty() {
            // Spread launches over the subnets, deterministically by token.
            let index = token.bytes().map(usize::from).sum::<usize>() % launch.subnet_ids.len();
            request = request.subnet_id(&launch.subnet_ids[index]);
        }
        if let Some(data) = &launch.user_data {
            request = request.user_data(base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                data,
            ));
        }
        // One attempt: moto, exec-like clouds and EC2 APIs behind proxies do not all honour the
        // ClientToken, and a retried RunInstances whose first answer was lost could launch twice.
        // A failed launch fails the run; the next one resolves the intent by its token tag.
        let output = request
            .customize()
            .config_override(aws_sdk_ec2::Config::builder().retry_config(RetryConfig::disabled()))
            .send()
            .await
            .map_err(|error| classify(&pool.name, Operation::Launch, &error))?;
        Ok(output
            .instances()
            .iter()
            .filter_map(|instance| instance.instance_id().map(str::to_owned))
            .collect())
    }

    async fn terminate(
        &self,
        pool: &PoolConfig,
        launcher: &Launcher,
        ids: &[String],
    ) -> Result<(), CloudError> {
        if !matches!(launcher, Launcher::Ec2(_)) {
            return Err(fatal_call(pool, Operation::Terminate, NOT_EC2));
        }
        self.client
            .terminate_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .send()
            .await
            .map(drop)
            .map_err(|error| classify(&pool.name, Operation::Terminate, &error))
    }
}

impl Ec2 {
    async fn list_matching(&self, pool: &PoolConfig) -> Result<Vec<Instance>, CloudError> {
        let discover = &pool.discover;
        let mut filters = vec![filter("instance-state-name", ["pending", "running"])];
        if let Some(group) = &discover.security_group {
            let name = if group.starts_with("sg-") {
                "instance.group-id"
            } else {
                "instance.group-name"
            };
            filters.push(filter(name, [group.as_str()]));
        }
        if let Some(image) = &discover.image_id {
            filters.push(filter("image-id", [image.as_str()]));
        }
        for (key, value) in &discover.tags {
            filters.push(filter(&format!("tag:{key}"), [value.as_str()]));
        }
        self.describe(pool, Operation::List, filters).await
    }
}

fn filter<'a>(name: &str, values: impl IntoIterator<Item = &'a str>) -> Filter {
    values
        .into_iter()
        .fold(Filter::builder().name(name), |builder, value| {
            builder.values(value)
        })
        .build()
}

fn convert(instance: &Ec2Instance) -> Option<Instance> {
    let state = match instance.state().and_then(|state| state.name()) {
        Some(InstanceStateName::Pending) => InstanceState::Pending,
        Some(InstanceStateName::Running) => InstanceState::Running,
        // The filter asks for pending and running only; anything else changed state meanwhile.
        _ => return None,
    };
    Some(Instance {
        id: instance.instance_id()?.to_owned(),
        state,
        private_ip: instance.private_ip_address().map(str::to_owned),
        public_ip: instance.public_ip_address().map(str::to_owned),
        port: None,
        launch_time: instance.launch_time().and_then(|time| {
            time.fmt(aws_sdk_ec2::primitives::DateTimeFormat::DateTime)
                .ok()
        }),
        zone: instance
            .placement()
            .and_then(|placement| placement.availability_zone())
            .map(str::to_owned),
        image_id: instance.image_id().map(str::to_owned),
        tags: instance
            .tags()
            .iter()
            .filter_map(|tag| Some((tag.key()?.to_owned(), tag.value()?.to_owned())))
            .collect(),
    })
}

fn classify<E, R>(pool: &str, operation: Operation, error: &SdkError<E, R>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let mut message = describe(error);
    let kind = match error {
        // Missing credentials surface as a dispatch failure, but no retry will fix them.
        SdkError::DispatchFailure(_) if message.contains("no credentials found") => {
            message = "no AWS credentials: set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile in ~/.aws, or an instance role".to_owned();
            CloudErrorKind::Rejected
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            CloudErrorKind::Transient
        }
        SdkError::ServiceError(service) => kind_of_code(service.err().code()),
        _ => CloudErrorKind::Fatal,
    };
    CloudError {
        pool: pool.to_owned(),
        operation,
        kind,
        cause: Cause::Api(message),
    }
}

/// An SDK error in words: the service's code and message, or what went wrong on the way
/// (the chain of causes, each once), never the SDK's debug dump.
fn describe<E, R>(error: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    if let SdkError::ServiceError(service) = error {
        let err = service.err();
        return match (err.code(), err.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_owned(),
            (None, Some(message)) => message.to_owned(),
            (None, None) => "the service answered with an error and no message".to_owned(),
        };
    }
    let lead = match error {
        SdkError::TimeoutError(_) => "timed out",
        SdkError::DispatchFailure(_) => "cannot reach the EC2 endpoint",
        SdkError::ResponseError(_) => "the EC2 endpoint's answer could not be read",
        _ => "the request could not be built",
    };
    let mut causes: Vec<String> = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        // Wrappers repeat their inner error's text, or say only "io error": keep what adds.
        if !text.is_empty()
            && !matches!(text.as_str(), "io error" | "dispatch failure" | "other")
            && !causes.iter().any(|seen| seen.contains(&text))
        {
            causes.push(text);
        }
        source = cause.source();
    }
    std::iter::once(lead.to_owned())
        .chain(causes)
        .collect::<Vec<_>>()
        .join(": ")
}

/// Sorts an EC2 error code into what an operator (and a retry) should do about it.
fn kind_of_code(code: Option<&str>) -> CloudErrorKind {
    match code {
        Some("RequestLimitExceeded" | "Throttling" | "ThrottlingException") => {
            CloudErrorKind::Throttled
        }
        Some("InternalError" | "InternalFailure" | "ServiceUnavailable" | "Unavailable") => {
            CloudErrorKind::Transient
        }
        Some(code)
            if code.starts_with("Invalid")
                || code.starts_with("Unauthorized")
                || code.starts_with("AuthFailure")
                || code.ends_with("NotFound")
                || code == "OptInRequired"
                || code == "Blocked" =>
        {
            CloudErrorKind::Rejected
        }
        _ => CloudErrorKind::Fatal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_classified() {
        let cases = [
            (Some("RequestLimitExceeded"), CloudErrorKind::Throttled),
            (Some("InternalError"), CloudErrorKind::Transient),
            (Some("Unavailable"), CloudErrorKind::Transient),
            (Some("UnauthorizedOperation"), CloudErrorKind::Rejected),
            (Some("AuthFailure"), CloudErrorKind::Rejected),
            (Some("InvalidParameterValue"), CloudErrorKind::Rejected),
            (Some("InvalidGroup.NotFound"), CloudErrorKind::Rejected),
            (Some("SomethingNew"), CloudErrorKind::Fatal),
            (None, CloudErrorKind::Fatal),
        ];
        for (code, kind) in cases {
            assert_eq!(kind_of_code(code), kind, "{code:?}");
        }
    }
}
