//! The API's error tokens, their HTTP statuses and the JSON error body.

use std::fmt;

use protocol::canonical_json::ObjectWriter;

/// Every error the HTTP API answers with (`gateway.ApiError`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ApiError {
    UnsupportedMediaType,
    BodyTooLarge,
    MalformedJson,
    MissingIdempotencyKey,
    IdempotencyKeyTooLong,
    UnknownCommand,
    InvalidField,
    QuantityNotPositive,
    QuantityAboveMax,
    InstanceHalted,
    Overloaded,
    ProduceFailed,
    SubmitTimeout,
    UnknownKey,
    AmbiguousKey,
    NotReady,
    NotFound,
}

impl ApiError {
    pub const ALL: [ApiError; 17] = [
        Self::UnsupportedMediaType,
        Self::BodyTooLarge,
        Self::MalformedJson,
        Self::MissingIdempotencyKey,
        Self::IdempotencyKeyTooLong,
        Self::UnknownCommand,
        Self::InvalidField,
        Self::QuantityNotPositive,
        Self::QuantityAboveMax,
        Self::InstanceHalted,
        Self::Overloaded,
        Self::ProduceFailed,
        Self::SubmitTimeout,
        Self::UnknownKey,
        Self::AmbiguousKey,
        Self::NotReady,
        Self::NotFound,
    ];

    /// The stable token clients match on: the body's `"error"`.
    pub fn token(self) -> &'static str {
        match self {
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::BodyTooLarge => "body_too_large",
            Self::MalformedJson => "malformed_json",
            Self::MissingIdempotencyKey => "missing_idempotency_key",
            Self::IdempotencyKeyTooLong => "idempotency_key_too_long",
            Self::UnknownCommand => "unknown_command",
            Self::InvalidField => "invalid_field",
            Self::QuantityNotPositive => "quantity_not_positive",
            Self::QuantityAboveMax => "quantity_above_max",
            Self::InstanceHalted => "instance_halted",
            Self::Overloaded => "overloaded",
            Self::ProduceFailed => "produce_failed",
            Self::SubmitTimeout => "submit_timeout",
            Self::UnknownKey => "unknown_key",
            Self::AmbiguousKey => "ambiguous_key",
            Self::NotReady => "not_ready",
            Self::NotFound => "not_found",
        }
    }

    pub fn http_status(self) -> u16 {
        match self {
            Self::UnsupportedMediaType => 415,
            Self::BodyTooLarge => 413,
            Self::MalformedJson
            | Self::MissingIdempotencyKey
            | Self::IdempotencyKeyTooLong
            | Self::UnknownCommand
            | Self::InvalidField => 400,
            Self::QuantityNotPositive | Self::QuantityAboveMax => 422,
            Self::InstanceHalted | Self::Overloaded | Self::ProduceFailed | Self::NotReady => 503,
            Self::SubmitTimeout => 504,
            Self::UnknownKey | Self::NotFound => 404,
            Self::AmbiguousKey => 409,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.token())
    }
}

/// One error answer: `{"error":TOKEN,"detail":TEXT}` plus
/// `"idempotency_key"` when the request carried one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorReply {
    pub error: ApiError,
    pub detail: String,
    pub idempotency_key: Option<String>,
}

impl ErrorReply {
    pub fn new(error: ApiError, detail: impl Into<String>) -> Self {
        Self {
            error,
            detail: detail.into(),
            idempotency_key: None,
        }
    }

    pub fn with_key(mut self, idempotency_key: impl Into<String>) -> Self {
        self.idempotency_key = Some(idempotency_key.into());
        self
    }

    pub fn http_status(&self) -> u16 {
        self.error.http_status()
    }

    /// Written with the canonical writer, so the same error always has the
    /// same bytes.
    pub fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.detail.len());
        let mut object = ObjectWriter::new(&mut out);
        object
            .string("error", self.error.token())
            .string("detail", &self.detail);
        if let Some(key) = &self.idempotency_key {
            object.string("idempotency_key", key);
        }
        object.finish();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_distinct_snake_case_and_statuses_are_errors() {
        let mut tokens: Vec<&str> = ApiError::ALL.iter().map(|e| e.token()).collect();
        tokens.sort_unstable();
        tokens.dedup();
        assert_eq!(tokens.len(), ApiError::ALL.len());
        for error in ApiError::ALL {
            assert!(
                error
                    .token()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_')
            );
            assert!((400..600).contains(&error.http_status()), "{error}");
        }
    }

    #[test]
    fn the_body_names_the_error_the_detail_and_the_key_when_given() {
        let plain = ErrorReply::new(ApiError::MalformedJson, "expected value at line 1");
        assert_eq!(
            String::from_utf8(plain.body()).expect("UTF-8"),
            r#"{"error":"malformed_json","detail":"expected value at line 1"}"#
        );
        let keyed = ErrorReply::new(ApiError::SubmitTimeout, "retry \"safely\"").with_key("k-1");
        let parsed: serde_json::Value = serde_json::from_slice(&keyed.body()).expect("JSON");
        assert_eq!(parsed["error"], "submit_timeout");
        assert_eq!(parsed["detail"], "retry \"safely\"");
        assert_eq!(parsed["idempotency_key"], "k-1");
        assert_eq!(keyed.http_status(), 504);
    }
}
