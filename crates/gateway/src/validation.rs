//! POST /v1/commands validation: from (content type, body bytes) to a
//! command ready to pack, or the first problem in the spec's order.
//!
//! Pure functions: the HTTP handler calls [`check_media_type`] and
//! [`check_body_size`] early (before buffering a body it would refuse) and
//! then [`validate_submission`], which runs every check in order again, so
//! the order lives in one place.

use domain::Domain as _;
use domain::inventory::{Inventory, InventoryCommand, rejection};
use serde_json::{Map, Value};

use crate::config::GatewayConfig;
use crate::error::{ApiError, ErrorReply};

/// A submission that passed every check: what the packer takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidSubmission {
    pub idempotency_key: String,
    pub command: InventoryCommand,
}

/// `application/json`, with or without a `charset=utf-8` parameter.
///
/// spec: gateway.WrongContentTypeRejected
pub fn check_media_type(content_type: Option<&str>) -> Result<(), ErrorReply> {
    let refuse = || {
        ErrorReply::new(
            ApiError::UnsupportedMediaType,
            format!(
                "Content-Type must be application/json (optionally charset=utf-8), got {:?}",
                content_type.unwrap_or("")
            ),
        )
    };
    let mut parts = content_type.ok_or_else(refuse)?.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(refuse());
    }
    for parameter in parts.map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = parameter.split_once('=').ok_or_else(refuse)?;
        let value = value.trim().trim_matches('"');
        if !(name.trim().eq_ignore_ascii_case("charset") && value.eq_ignore_ascii_case("utf-8")) {
            return Err(refuse());
        }
    }
    Ok(())
}

/// spec: gateway.OversizedBodyRejected
pub fn check_body_size(body_bytes: usize, max_body_bytes: usize) -> Result<(), ErrorReply> {
    if body_bytes > max_body_bytes {
        return Err(body_too_large(max_body_bytes));
    }
    Ok(())
}

/// The answer to a body longer than `max_body_bytes`, also when the read
/// stopped before its end.
pub fn body_too_large(max_body_bytes: usize) -> ErrorReply {
    ErrorReply::new(
        ApiError::BodyTooLarge,
        format!("the body exceeds {max_body_bytes} bytes"),
    )
}

/// Runs `gateway.SubmitRequest.problem`'s checks in order; the first
/// failing one names the answer.
///
/// spec: gateway.MalformedJsonRejected, gateway.MissingIdempotencyKeyRejected, gateway.IdempotencyKeyTooLongRejected, gateway.UnknownCommandTypeRejected, gateway.InvalidCommandFieldRejected, gateway.NonPositiveQuantityRejected, gateway.QuantityAboveMaxRejected
pub fn validate_submission(
    content_type: Option<&str>,
    body: &[u8],
    config: &GatewayConfig,
) -> Result<ValidSubmission, ErrorReply> {
    check_media_type(content_type)?;
    check_body_size(body.len(), config.max_body_bytes)?;
    let document: Value = serde_json::from_slice(body)
        .map_err(|error| ErrorReply::new(ApiError::MalformedJson, error.to_string()))?;
    let fields = document.as_object();
    let idempotency_key = idempotency_key(fields, config.max_idempotency_key_bytes)?;
    let command =
        command(fields, config).map_err(|reply| reply.with_key(idempotency_key.as_str()))?;
    Ok(ValidSubmission {
        idempotency_key,
        command,
    })
}

fn idempotency_key(
    fields: Option<&Map<String, Value>>,
    max_key_bytes: usize,
) -> Result<String, ErrorReply> {
    let missing = |detail: &str| ErrorReply::new(ApiError::MissingIdempotencyKey, detail);
    let Some(fields) = fields else {
        return Err(missing(
            "the body must be a JSON object with a non-empty idempotency_key",
        ));
    };
    match fields.get("idempotency_key") {
        None | Some(Value::Null) => Err(missing("idempotency_key is required")),
        Some(Value::String(key)) if key.is_empty() => {
            Err(missing("idempotency_key must not be empty"))
        }
        Some(Value::String(key)) if key.len() > max_key_bytes => Err(ErrorReply::new(
            ApiError::IdempotencyKeyTooLong,
            format!(
                "idempotency_key is {} bytes, at most {max_key_bytes} are allowed",
                key.len()
            ),
        )),
        Some(Value::String(key)) => Ok(key.clone()),
        Some(_) => Err(missing("idempotency_key must be a string")),
    }
}

enum CommandKind {
    Receive,
    Ship,
    Transfer,
}

impl CommandKind {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "receive" => Some(Self::Receive),
            "ship" => Some(Self::Ship),
            "transfer" => Some(Self::Transfer),
            _ => None,
        }
    }
}

fn command(
    fields: Option<&Map<String, Value>>,
    config: &GatewayConfig,
) -> Result<InventoryCommand, ErrorReply> {
    let command = fields
        .and_then(|f| f.get("command"))
        .and_then(Value::as_object);
    let type_name = command.and_then(|c| c.get("type")).and_then(Value::as_str);
    let (Some(command), Some(kind)) = (command, type_name.and_then(CommandKind::parse)) else {
        let named = match type_name {
            Some(name) => format!("unknown command type {name:?}"),
            None => "command.type is required".to_owned(),
        };
        return Err(ErrorReply::new(
            ApiError::UnknownCommand,
            format!("{named}: command.type must be one of receive, ship, transfer"),
        ));
    };
    let parsed = match kind {
        CommandKind::Receive => InventoryCommand::Receive {
            warehouse: string_field(command, "warehouse")?,
            sku: string_field(command, "sku")?,
            quantity: quantity_field(command)?,
        },
        CommandKind::Ship => InventoryCommand::Ship {
            warehouse: string_field(command, "warehouse")?,
            sku: string_field(command, "sku")?,
            quantity: quantity_field(command)?,
        },
        CommandKind::Transfer => InventoryCommand::Transfer {
            from: string_field(command, "from")?,
            to: string_field(command, "to")?,
            sku: string_field(command, "sku")?,
            quantity: quantity_field(command)?,
        },
    };
    // The domain's own checks, so the gateway refuses exactly what the
    // Usher would dead-letter.
    Inventory::new(config.inventory)
        .validate(&parsed)
        .map_err(|error| {
            let (api_error, detail) = match error.reason {
                rejection::QUANTITY_NOT_POSITIVE => (ApiError::QuantityNotPositive, error.detail),
                rejection::QUANTITY_ABOVE_MAX => (ApiError::QuantityAboveMax, error.detail),
                rejection::INVALID_FIELD => {
                    (ApiError::InvalidField, format!("command.{}", error.detail))
                }
                other => (
                    ApiError::InvalidField,
                    format!(
                        "the command fails the domain's check {other}: {}",
                        error.detail
                    ),
                ),
            };
            ErrorReply::new(api_error, detail)
        })?;
    Ok(parsed)
}

fn invalid_field(detail: String) -> ErrorReply {
    ErrorReply::new(ApiError::InvalidField, detail)
}

fn string_field(command: &Map<String, Value>, name: &str) -> Result<String, ErrorReply> {
    match command.get(name) {
        Some(Value::String(value)) => Ok(value.clone()),
        Some(_) => Err(invalid_field(format!("command.{name} must be a string"))),
        None => Err(invalid_field(format!("command.{name} is required"))),
    }
}

/// A JSON integer. Integers beyond i64 saturate, so the domain's checks
/// still name them (not positive, above max) after the identifier checks.
fn quantity_field(command: &Map<String, Value>) -> Result<i64, ErrorReply> {
    // 2^63: every f64 at or beyond it is integral and outside i64.
    const I64_SPAN: f64 = 9_223_372_036_854_775_808.0;
    let not_integer = || invalid_field("command.quantity must be an integer".to_owned());
    match command.get("quantity") {
        None => Err(invalid_field("command.quantity is required".to_owned())),
        Some(Value::Number(number)) => {
            if let Some(quantity) = number.as_i64() {
                Ok(quantity)
            } else if number.is_u64() {
                Ok(i64::MAX)
            } else {
                match number.as_f64() {
                    Some(value) if value >= I64_SPAN => Ok(i64::MAX),
                    Some(value) if value <= -I64_SPAN => Ok(i64::MIN),
                    _ => Err(not_integer()),
                }
            }
        }
        Some(_) => Err(not_integer()),
    }
}

#[cfg(test)]
mod tests;
