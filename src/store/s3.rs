//! The shared state in S3: one object per deployment, changed only by compare-and-swap.
//!
//! Every save is a conditional write: the first with `If-None-Match: *` (no object yet), every
//! later one with `If-Match: <the ETag it was loaded at>`. The body is the state file's JSON with
//! a `generation` (saves so far) and a random `nonce`: the ETag is the MD5 of the bytes, so two
//! saves of equal states would otherwise share one ETag. A 412 (or 409, a concurrent conditional
//! write) can mean the write won but its answer was lost and the SDK's retry was refused: the
//! object is read back, and the save counts as won only when it carries this save's nonce.
//!
//! One object for the whole deployment, not one per pool: a run's decisions and its launch
//! intents across pools are committed together, and the object has the local state file's
//! format (plus the two fields), so `aws s3 cp state.json s3://...` moves a deployment to it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use aws_config::SdkConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, ProvideCredentials, RuntimeComponents};
use aws_sdk_s3::error::{BoxError, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime, DateTimeFormat};
use serde::Serialize;

use super::{Revision, STATE_LIMIT, Stamp, StateError, StateStore, from_stamped_bytes};

use crate::config::S3Location;
use crate::model::State;

/// The state object of a deployment.
#[derive(Debug, Clone)]
pub(crate) struct S3Store {
    client: Client,
    location: S3Location,
    /// The `Date` of S3's last answer, Unix seconds: the fleet's clock.
    clock: Arc<Mutex<Option<i64>>>,
    /// How long an object's body may take to arrive once its head has: one attempt's timeout.
    /// (The SDK's timeouts end with the head; a body sent without a length, or trickled, would
    /// otherwise be read for ever.)
    body_within: std::time::Duration,
}

/// Keeps the `Date` header of every answer.
#[derive(Debug)]
struct ReadDate(Arc<Mutex<Option<i64>>>);

impl Intercept for ReadDate {
    fn name(&self) -> &'static str {
        "ReadDate"
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let date = context
            .response()
            .headers()
            .get("date")
            .and_then(|text| DateTime::from_str(text, DateTimeFormat::HttpDate).ok());
        if let Some(date) = date {
            *self.0.lock().expect("clock lock") = Some(date.secs());
        }
        Ok(())
    }
}

/// The stored body: the state and its stamp side by side.
#[derive(Serialize)]
struct Stamped<'a> {
    #[serde(flatten)]
    state: &'a State,
    #[serde(flatten)]
    stamp: &'a Stamp,
}

impl S3Store {
    /// A store for `location` with the run's AWS configuration. Path-style addressing when an
    /// `endpoint_url` is configured (moto, MinIO and other S3-compatible stores), virtual-hosted
    /// otherwise (AWS).
    pub(crate) fn new(sdk: &SdkConfig, location: &S3Location, path_style: bool) -> S3Store {
        let clock = Arc::new(Mutex::new(None));
        let config = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(path_style)
            .interceptor(ReadDate(clock.clone()))
            .build();
        let body_within = sdk
            .timeout_config()
            .and_then(aws_config::timeout::TimeoutConfig::operation_attempt_timeout)
            .unwrap_or(std::time::Duration::from_secs(10));
        S3Store {
            client: Client::from_conf(config),
            location: location.clone(),
            clock,
            body_within,
        }
    }

    /// Fails when the SDK finds no credentials: that is a setup to fix (exit 1), not an outage
    /// to wait out, and S3's client would report it as a failure to send.
    pub(crate) async fn check_credentials(
        sdk: &SdkConfig,
        location: &S3Location,
    ) -> Result<(), StateError> {
        let Some(provider) = sdk.credentials_provider() else {
            return Ok(());
        };
        provider
            .provide_credentials()
            .await
            .map(drop)
            .map_err(|error| StateError::Shared {
                location: location.to_string(),
                message: format!(
                    "no AWS credentials: {}",
                    crate::error_chain::error_chain(&error)
                ),
            })
    }

    pub(crate) fn location(&self) -> &S3Location {
        &self.location
    }

    /// The time of S3's last answer (Unix seconds), if it gave one.
    pub(crate) fn clock(&self) -> Option<i64> {
        *self.clock.lock().expect("clock lock")
    }

    fn name(&self) -> PathBuf {
        PathBuf::from(self.location.to_string())
    }

    fn failed<E, R>(&self, error: &SdkError<E, R>) -> StateError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let location = self.location.to_string();
        let message = match error {
            SdkError::ServiceError(service) => {
                let error = service.err();
                format!(
                    "{}: {}",
                    error.code().unwrap_or("error"),
                    error.message().unwrap_or("no message")
                )
            }
            // The causes, without the SDK's debug dump of the error.
            _ => crate::error_chain::error_chain(&error),
        };
        match &error {
            // Not reached (a connection refused or cut, a timeout): the next run tries again.
            // (Missing credentials, a dispatch failure too, are found before: [`S3Store::check_credentials`].)
            SdkError::DispatchFailure(_)
            | SdkError::TimeoutError(_)
            | SdkError::ResponseError(_) => StateError::Unreachable { location, message },
            SdkError::ServiceError(service)
                if matches!(
                    service.err().code(),
                    Some("InternalError" | "ServiceUnavailable" | "SlowDown")
                ) =>
            {
                StateError::Unreachable { location, message }
            }
            _ => StateError::Shared {
                location,
                message: format!(
                    "{message}; check `[state] path` (the bucket must exist) and that these credentials may s3:GetObject and s3:PutObject the key (and s3:ListBucket the bucket, or S3 answers a missing key with AccessDenied)"
                ),
            },
        }
    }

    /// The object's state, stamp and ETag; `None` when there is no object.
    async fn read(&self) -> Result<Option<(State, Option<Stamp>, String)>, StateError> {
        let answer = self
            .client
            .get_object()
            .bucket(&self.location.bucket)
            .key(&self.location.key)
            .send()
            .await;
        let output = match answer {
            Ok(output) => output,
            Err(SdkError::ServiceError(service)) if service.err().is_no_such_key() => {
                return Ok(None);
            }
            Err(error) => return Err(self.failed(&error)),
        };
        if output.content_length().unwrap_or(0) as u64 > STATE_LIMIT {
            return Err(StateError::Corrupt {
                path: self.name(),
                message: format!("it is larger than {STATE_LIMIT} bytes"),
            });
        }
        let etag = output.e_tag().unwrap_or_default().to_owned();
        // Bounded whatever the head said (issue 29, class 2): an object sent without a
        // Content-Length, endless or trickled, fails here rather than fill memory or hang.
        let deadline = tokio::time::Instant::now() + self.body_within;
        let bytes = crate::exchange::read_body(output.body.into_inner(), STATE_LIMIT, deadline)
            .await
            .map_err(|error| match error.kind() {
                std::io::ErrorKind::FileTooLarge => StateError::Corrupt {
                    path: self.name(),
                    message: format!("it is larger than {STATE_LIMIT} bytes"),
                },
                _ => StateError::Unreachable {
                    location: self.location.to_string(),
                    message: format!("reading the object: {error}"),
                },
            })?;
        let (state, stamp) = from_stamped_bytes(&bytes, &self.name())?;
        Ok(Some((state, stamp, etag)))
    }
}

/// An S3 object's revision: its ETag (`None` when there was no object) and the generation its
/// body's stamp carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct S3Revision {
    etag: Option<String>,
    generation: u64,
}

impl Revision for S3Revision {
    fn is_none(&self) -> bool {
        self.etag.is_none()
    }

    fn state_generation(&self) -> u64 {
        self.generation
    }
}

impl StateStore for S3Store {
    type Revision = S3Revision;

    async fn load(&self) -> Result<(State, S3Revision), StateError> {
        Ok(match self.read().await? {
            None => (
                State::default(),
                S3Revision {
                    etag: None,
                    generation: 0,
                },
            ),
            Some((state, stamp, etag)) => (
                state,
                S3Revision {
                    etag: Some(etag),
                    generation: stamp.map_or(0, |stamp| stamp.generation),
                },
            ),
        })
    }

    async fn save(&self, state: &State, expected: &S3Revision) -> Result<S3Revision, StateError> {
        let stamp = Stamp {
            generation: expected.generation + 1,
            nonce: super::random_hex(),
        };
        let mut bytes = serde_json::to_vec_pretty(&Stamped {
            state,
            stamp: &stamp,
        })
        .map_err(|source| StateError::Encode {
            path: self.name(),
            source,
        })?;
        bytes.push(b'\n');
        let request = self
            .client
            .put_object()
            .bucket(&self.location.bucket)
            .key(&self.location.key)
            .content_type("application/json")
            .body(ByteStream::from(bytes));
        let request = match &expected.etag {
            None => request.if_none_match("*"),
            Some(etag) => request.if_match(etag),
        };
        match request.send().await {
            Ok(output) => Ok(S3Revision {
                etag: output.e_tag().map(str::to_owned),
                generation: stamp.generation,
            }),
            Err(SdkError::ServiceError(service))
                if matches!(service.raw().status().as_u16(), 409 | 412) =>
            {
                // Refused: another node's write came first, or this one did and its answer was
                // lost. Only the object's nonce tells which.
                match self.read().await? {
                    Some((_, Some(found), etag)) if found == stamp => Ok(S3Revision {
                        etag: Some(etag),
                        generation: stamp.generation,
                    }),
                    _ => Err(StateError::Raced {
                        location: self.location.to_string(),
                    }),
                }
            }
            Err(error) => Err(self.failed(&error)),
        }
    }
}
