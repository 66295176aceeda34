//! Turning SDK errors into decisions (retry or not) and into messages a
//! person can act on.

use aws_sdk_s3vectors::error::{ProvideErrorMetadata, SdkError};
use rag_core::Error;

/// What went wrong with one call, in the terms the retry loop and the
/// messages need.
#[derive(Debug)]
pub struct Failure {
    /// The service's error code (`NotFoundException`, ...), if it answered.
    pub code: Option<String>,
    /// The service's message, or the transport error.
    pub message: String,
    /// Whether the service answered at all.
    pub answered: bool,
    /// The full error, for the source chain.
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl Failure {
    pub fn from_sdk<E>(err: SdkError<E>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let answered = matches!(err, SdkError::ServiceError(_));
        let code = err.code().map(str::to_string);
        let message = match err.message() {
            Some(message) => message.to_string(),
            None => chain(&err),
        };
        Self { code, message, answered, source: Box::new(err) }
    }

    /// Worth another try: throttling, 5xx, timeouts, and transport failures.
    pub fn is_retryable(&self) -> bool {
        match self.code.as_deref() {
            Some(
                "TooManyRequestsException"
                | "ThrottlingException"
                | "ServiceUnavailableException"
                | "InternalServerException"
                | "RequestTimeoutException",
            ) => true,
            Some(_) => false,
            None => !self.answered && !self.is_credentials(),
        }
    }

    pub fn is_unavailable(&self) -> bool {
        self.code.as_deref() == Some("ServiceUnavailableException")
    }

    pub fn is_throttling(&self) -> bool {
        matches!(self.code.as_deref(), Some("TooManyRequestsException" | "ThrottlingException"))
    }

    fn is_credentials(&self) -> bool {
        let text = self.message.to_ascii_lowercase();
        text.contains("credential") && !self.answered
    }

    /// The error a caller sees after the retries are spent.
    pub fn into_error(self, context: &Context<'_>, attempts: u32) -> Error {
        let code = self.code.clone().unwrap_or_default();
        let what = context.describe();
        let (throttled, credentials, answered) =
            (self.is_throttling() || self.is_unavailable(), self.is_credentials(), self.answered);
        let source = Some(self.source);
        match code.as_str() {
            "NotFoundException" if context.index.is_some() && !context.op.contains("Bucket") => {
                if self.message.to_ascii_lowercase().contains("bucket") {
                    Error::Backend {
                        backend: "s3vectors".into(),
                        message: format!(
                            "vector bucket {:?} not found ({}); create a store to create it, or check --bucket and \
                             --region",
                            context.bucket, self.message
                        ),
                        source,
                    }
                } else {
                    Error::StoreNotFound {
                        store: context.index.unwrap_or_default().to_string(),
                        backend: "s3vectors".into(),
                    }
                }
            }
            "NotFoundException" => Error::Backend {
                backend: "s3vectors".into(),
                message: format!("{what}: not found: {}; check --bucket and --region", self.message),
                source,
            },
            "AccessDeniedException" => {
                let extra = if context.op == "QueryVectors" {
                    " (filters and returned metadata also need s3vectors:GetVectors)"
                } else {
                    ""
                };
                Error::Backend {
                    backend: "s3vectors".into(),
                    message: format!(
                        "access denied for s3vectors:{} on {what}: {}. Grant s3vectors:{}{extra} to your AWS identity",
                        context.op, self.message, context.op
                    ),
                    source,
                }
            }
            "ValidationException" => {
                Error::InvalidInput(format!("S3 Vectors refused {}: {}", context.op, self.message))
            }
            "ConflictException" => Error::StoreExists {
                store: context.index.unwrap_or(context.bucket).to_string(),
                backend: "s3vectors".into(),
            },
            "ServiceQuotaExceededException" => Error::Backend {
                backend: "s3vectors".into(),
                message: format!("{what}: service quota exceeded: {}", self.message),
                source,
            },
            code if code.starts_with("Kms") => Error::Backend {
                backend: "s3vectors".into(),
                message: format!(
                    "{what}: KMS error {code}: {}; check the bucket's KMS key and its policy",
                    self.message
                ),
                source,
            },
            _ if throttled => Error::Throttled { service: format!("S3 Vectors ({what})"), attempts },
            _ if credentials => Error::Backend {
                backend: "s3vectors".into(),
                message: format!(
                    "no usable AWS credentials: {}. Configure them (aws configure, AWS_PROFILE or --profile, \
                     AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or aws sso login)",
                    self.message
                ),
                source,
            },
            _ if !answered => Error::Backend {
                backend: "s3vectors".into(),
                message: format!(
                    "cannot reach S3 Vectors at {} for {what} after {attempts} attempts: {}",
                    context.endpoint, self.message
                ),
                source,
            },
            _ => Error::Backend {
                backend: "s3vectors".into(),
                message: format!("{} failed on {what} after {attempts} attempts: {code} {}", context.op, self.message),
                source,
            },
        }
    }
}

/// Where a call went, for messages.
pub struct Context<'a> {
    pub op: &'static str,
    pub bucket: &'a str,
    pub index: Option<&'a str>,
    pub endpoint: &'a str,
}

impl Context<'_> {
    fn describe(&self) -> String {
        match self.index {
            Some(index) => format!("index {index:?} in bucket {:?}", self.bucket),
            None => format!("bucket {:?}", self.bucket),
        }
    }
}

fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(next) = cause {
        let part = next.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = next.source();
    }
    text
}
