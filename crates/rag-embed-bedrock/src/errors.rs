//! Turning an InvokeModel failure into the [`rag_core::Error`] a caller acts on.

use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use rag_core::Error;

/// The error of a call that failed for good (the SDK's retries spent).
pub(crate) fn to_error<E>(err: SdkError<E>, service: &str, model: &str, attempts: u32) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = err.code().map(str::to_string);
    let message = err.message().map(str::to_string).unwrap_or_else(|| Error::root_cause(&err));
    let lower = message.to_ascii_lowercase();
    match code.as_deref() {
        Some("AccessDeniedException") => Error::AccessDenied {
            service: service.to_string(),
            reason: message,
            hint: if lower.contains("access to the model") {
                "enable the model for this account and region in the Bedrock console (Model access), or pick a \
                 region where it is"
                    .into()
            } else {
                "the role needs bedrock:InvokeModel on this model".into()
            },
        },
        Some("UnrecognizedClientException" | "InvalidSignatureException" | "ExpiredTokenException") => {
            Error::AccessDenied {
                service: service.to_string(),
                reason: message,
                hint: "check the AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID, `aws sso login`)".into(),
            }
        }
        Some("ResourceNotFoundException") => Error::ModelMissing {
            model: model.to_string(),
            hint: format!("{service} has no such model ({message}); check the model id and the region"),
        },
        Some("ValidationException")
            if lower.contains("too many input tokens") || lower.contains("maxlength") || lower.contains("too long") =>
        {
            Error::ContextLength { model: model.to_string(), chars: 0 }
        }
        Some("ValidationException") => Error::InvalidInput(format!("{service} refused the request: {message}")),
        Some("ThrottlingException" | "ServiceQuotaExceededException" | "TooManyRequestsException") => {
            Error::Throttled { service: service.to_string(), attempts }
        }
        _ => match &err {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => Error::EmbedderUnreachable {
                endpoint: service.to_string(),
                reason: Error::root_cause(&err),
                hint: "Check the network, the region and --bedrock-url (or AWS_ENDPOINT_URL_BEDROCK_RUNTIME).".into(),
            },
            SdkError::ConstructionFailure(_) if lower.contains("credentials") => Error::AccessDenied {
                service: service.to_string(),
                reason: message,
                hint: "no usable AWS credentials: set AWS_PROFILE, or run `aws configure` or `aws sso login`".into(),
            },
            _ => Error::Embedder { message: format!("{service} failed: {message}"), source: Some(Box::new(err)) },
        },
    }
}

/// The service asked this client to slow down.
pub(crate) fn is_throttling<E: ProvideErrorMetadata>(err: &SdkError<E>) -> bool {
    matches!(err.code(), Some("ThrottlingException" | "ServiceQuotaExceededException" | "TooManyRequestsException"))
}

/// Worth another try: throttling, a model warming up, 5xx, timeouts, dropped connections.
pub(crate) fn is_retryable<E: ProvideErrorMetadata>(err: &SdkError<E>) -> bool {
    is_throttling(err)
        || matches!(
            err.code(),
            Some(
                "ServiceUnavailableException"
                    | "InternalServerException"
                    | "ModelNotReadyException"
                    | "ModelTimeoutException"
            )
        )
        || matches!(err, SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_))
}

/// A wait between half and all of `max`, so callers throttled together do
/// not come back together.
pub(crate) fn jitter(max: std::time::Duration) -> std::time::Duration {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0x2545_F491_4F6C_DD1D);
    let mut x = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    max.mul_f64(0.5 + (x % 1000) as f64 / 2000.0)
}
