//! Turns AWS SDK failures into [`ConnectorError`]s, once for every service.
//!
//! Every SDK crate re-exports the same smithy error types, so one generic function classifies
//! Kinesis, DynamoDB and Firehose errors alike by their error code.

use std::error::Error;

use aws_sdk_dynamodb::operation::delete_item::{DeleteItemError, DeleteItemOutput};
use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
use aws_sdk_kinesis::error::{BuildError, DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::error::ConnectorError;

/// Error codes that mean "too much, slow down": retrying after a backoff can succeed.
const THROTTLING_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "LimitExceededException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "KMSThrottlingException",
    // Firehose answers throughput overload with this code.
    "ServiceUnavailableException",
];

/// Error codes that retrying cannot fix: a missing resource, bad input or missing permissions.
const MISCONFIGURED_CODES: &[&str] = &[
    "ResourceNotFoundException",
    "ValidationException",
    "InvalidArgumentException",
    "InvalidArgumentsException",
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "KMSAccessDeniedException",
    "KMSDisabledException",
    "KMSNotFoundException",
    "KMSInvalidStateException",
];

/// Whether `code` is one of the throttling codes above.
pub(crate) fn is_throttling_code(code: &str) -> bool {
    THROTTLING_CODES.contains(&code)
}

/// Classifies any SDK error (or an operation's service error) of `service`.
pub(crate) fn sdk_error<E>(service: &'static str, err: E) -> ConnectorError
where
    E: ProvideErrorMetadata + Error,
{
    let detail = DisplayErrorContext(&err).to_string();
    match err.code() {
        Some(code) if is_throttling_code(code) => ConnectorError::Throttled { service, detail },
        Some(code) if MISCONFIGURED_CODES.contains(&code) => {
            ConnectorError::Misconfigured(format!("{service}: {detail}"))
        }
        _ => ConnectorError::Unavailable { service, detail },
    }
}

/// A request the SDK refused to build: a required field is missing, which is our bug or bad
/// input, never worth retrying.
pub(crate) fn build_error(service: &'static str, err: BuildError) -> ConnectorError {
    ConnectorError::Misconfigured(format!("{service}: {err}"))
}

/// A conditional DynamoDB PutItem's answer: a failed condition is a [`ConnectorError::Conflict`]
/// about `what` (only made then), any other error is classified by [`sdk_error`].
pub(crate) fn conditional_put(
    put: Result<PutItemOutput, SdkError<PutItemError>>,
    what: impl FnOnce() -> String,
) -> crate::error::Result<()> {
    conditional(
        put,
        PutItemError::is_conditional_check_failed_exception,
        what,
    )
    .map(|_| ())
}

/// A conditional DynamoDB DeleteItem's answer, as [`conditional_put`].
pub(crate) fn conditional_delete(
    delete: Result<DeleteItemOutput, SdkError<DeleteItemError>>,
    what: impl FnOnce() -> String,
) -> crate::error::Result<()> {
    conditional(
        delete,
        DeleteItemError::is_conditional_check_failed_exception,
        what,
    )
    .map(|_| ())
}

/// A conditional DynamoDB UpdateItem's answer, as [`conditional_put`].
pub(crate) fn conditional_update(
    update: Result<UpdateItemOutput, SdkError<UpdateItemError>>,
    what: impl FnOnce() -> String,
) -> crate::error::Result<UpdateItemOutput> {
    conditional(
        update,
        UpdateItemError::is_conditional_check_failed_exception,
        what,
    )
}

fn conditional<T, E>(
    answer: Result<T, SdkError<E>>,
    failed_condition: fn(&E) -> bool,
    what: impl FnOnce() -> String,
) -> crate::error::Result<T>
where
    E: ProvideErrorMetadata + Error + 'static,
{
    match answer {
        Ok(output) => Ok(output),
        Err(e) if e.as_service_error().is_some_and(failed_condition) => {
            Err(ConnectorError::Conflict { what: what() })
        }
        Err(e) => Err(sdk_error("dynamodb", e)),
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_kinesis::error::ErrorMetadata;
    use aws_sdk_kinesis::operation::put_records::PutRecordsError;

    use super::*;

    fn classify(code: &str) -> ConnectorError {
        let meta = ErrorMetadata::builder().code(code).message("boom").build();
        sdk_error("kinesis", PutRecordsError::generic(meta))
    }

    #[test]
    fn maps_codes_to_what_callers_do() {
        assert!(matches!(
            classify("ProvisionedThroughputExceededException"),
            ConnectorError::Throttled { .. }
        ));
        assert!(matches!(
            classify("ResourceNotFoundException"),
            ConnectorError::Misconfigured(_)
        ));
        assert!(matches!(
            classify("InternalFailure"),
            ConnectorError::Unavailable { .. }
        ));
    }
}
