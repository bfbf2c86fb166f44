use proptest::prelude::*;
use serde_json::json;

use super::*;

const JSON: Option<&str> = Some("application/json");

fn check(body: &serde_json::Value) -> Result<ValidSubmission, ErrorReply> {
    validate_submission(JSON, body.to_string().as_bytes(), &GatewayConfig::default())
}

fn error_of(body: &serde_json::Value) -> ApiError {
    check(body).expect_err("the request is refused").error
}

fn receive(quantity: serde_json::Value) -> serde_json::Value {
    json!({"idempotency_key": "k-1", "command": {"type": "receive", "warehouse": "w1", "sku": "s1", "quantity": quantity}})
}

#[test]
fn a_valid_request_of_every_kind_becomes_its_command() {
    let receive = check(&receive(json!(5))).expect("valid");
    assert_eq!(
        receive,
        ValidSubmission {
            idempotency_key: "k-1".into(),
            command: InventoryCommand::Receive {
                warehouse: "w1".into(),
                sku: "s1".into(),
                quantity: 5
            },
        }
    );
    let ship = check(&json!({"idempotency_key": "k", "command": {"type": "ship", "warehouse": "w", "sku": "s", "quantity": 1_000_000}}))
        .expect("valid");
    assert!(matches!(
        ship.command,
        InventoryCommand::Ship {
            quantity: 1_000_000,
            ..
        }
    ));
    let transfer = check(&json!({"idempotency_key": "k", "command": {"type": "transfer", "from": "a", "to": "b", "sku": "s", "quantity": 2}, "extra": true}))
        .expect("valid");
    assert_eq!(
        transfer.command,
        InventoryCommand::Transfer {
            from: "a".into(),
            to: "b".into(),
            sku: "s".into(),
            quantity: 2
        }
    );
}

/// covers: gateway.WrongContentTypeRejected
#[test]
fn only_json_with_an_optional_utf8_charset_is_accepted() {
    for accepted in [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        "application/json;charset=\"UTF-8\"",
    ] {
        assert_eq!(check_media_type(Some(accepted)), Ok(()), "{accepted}");
    }
    for refused in [
        None,
        Some(""),
        Some("text/plain"),
        Some("application/jsonx"),
        Some("application/json; charset=latin1"),
        Some("application/json; boundary=x"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let reply = check_media_type(refused).expect_err("refused");
        assert_eq!(reply.error, ApiError::UnsupportedMediaType, "{refused:?}");
        assert_eq!(reply.http_status(), 415);
    }
}

/// covers: gateway.OversizedBodyRejected
#[test]
fn a_body_over_the_limit_is_refused_even_when_it_is_valid_json() {
    let config = GatewayConfig::default();
    let mut body = receive(json!(1)).to_string().into_bytes();
    body.resize(config.max_body_bytes, b' ');
    assert!(validate_submission(JSON, &body, &config).is_ok());
    body.push(b' ');
    let reply = validate_submission(JSON, &body, &config).expect_err("too large");
    assert_eq!(reply.error, ApiError::BodyTooLarge);
    assert_eq!(reply.http_status(), 413);
}

/// covers: gateway.MalformedJsonRejected
#[test]
fn malformed_json_is_refused_with_the_parser_position() {
    for body in [
        &b"{"[..],
        b"",
        b"{\"idempotency_key\": }",
        b"\xff\xfe",
        b"{} trailing",
    ] {
        let reply =
            validate_submission(JSON, body, &GatewayConfig::default()).expect_err("malformed");
        assert_eq!(reply.error, ApiError::MalformedJson, "{body:?}");
        assert!(!reply.detail.is_empty());
    }
}

/// covers: gateway.MissingIdempotencyKeyRejected
#[test]
fn a_missing_null_empty_or_non_string_key_is_missing() {
    let command = json!({"type": "receive", "warehouse": "w", "sku": "s", "quantity": 1});
    for body in [
        json!({"command": command}),
        json!({"idempotency_key": null, "command": command}),
        json!({"idempotency_key": "", "command": command}),
        json!({"idempotency_key": 7, "command": command}),
        json!([1, 2]),
    ] {
        assert_eq!(error_of(&body), ApiError::MissingIdempotencyKey, "{body}");
    }
}

/// covers: gateway.IdempotencyKeyTooLongRejected
#[test]
fn the_key_limit_counts_utf8_bytes() {
    let command = json!({"type": "receive", "warehouse": "w", "sku": "s", "quantity": 1});
    let at_limit = "é".repeat(64);
    assert!(check(&json!({"idempotency_key": at_limit, "command": command})).is_ok());
    let over = format!("{at_limit}x");
    assert_eq!(over.chars().count(), 65);
    assert_eq!(
        error_of(&json!({"idempotency_key": over, "command": command})),
        ApiError::IdempotencyKeyTooLong
    );
}

/// covers: gateway.UnknownCommandTypeRejected
#[test]
fn an_absent_or_unknown_command_type_is_unknown() {
    for body in [
        json!({"idempotency_key": "k"}),
        json!({"idempotency_key": "k", "command": "receive"}),
        json!({"idempotency_key": "k", "command": {"warehouse": "w"}}),
        json!({"idempotency_key": "k", "command": {"type": "refund", "warehouse": "w", "sku": "s", "quantity": 1}}),
        json!({"idempotency_key": "k", "command": {"type": "Receive", "warehouse": "w", "sku": "s", "quantity": 1}}),
    ] {
        let reply = check(&body).expect_err("refused");
        assert_eq!(reply.error, ApiError::UnknownCommand, "{body}");
        assert_eq!(reply.idempotency_key.as_deref(), Some("k"));
    }
}

/// covers: gateway.InvalidCommandFieldRejected
#[test]
fn the_detail_names_the_first_offending_field() {
    let cases = [
        (
            json!({"type": "receive", "sku": "s", "quantity": 1}),
            "command.warehouse",
        ),
        (
            json!({"type": "ship", "warehouse": 3, "sku": "s", "quantity": 1}),
            "command.warehouse",
        ),
        (
            json!({"type": "ship", "warehouse": "w", "sku": "s", "quantity": "1"}),
            "command.quantity",
        ),
        (
            json!({"type": "ship", "warehouse": "w", "sku": "s", "quantity": 1.5}),
            "command.quantity",
        ),
        (
            json!({"type": "ship", "warehouse": "w", "sku": "s"}),
            "command.quantity",
        ),
        (
            json!({"type": "transfer", "from": "a", "sku": "s", "quantity": 1}),
            "command.to",
        ),
        (
            json!({"type": "receive", "warehouse": "", "sku": "s", "quantity": 1}),
            "command.warehouse",
        ),
        (
            json!({"type": "receive", "warehouse": "w", "sku": "x".repeat(129), "quantity": 1}),
            "command.sku",
        ),
        (
            json!({"type": "transfer", "from": "a", "to": "", "sku": "s", "quantity": 0}),
            "command.to",
        ),
    ];
    for (command, field) in cases {
        let reply =
            check(&json!({"idempotency_key": "k", "command": command})).expect_err("refused");
        assert_eq!(reply.error, ApiError::InvalidField, "{command}");
        assert!(
            reply.detail.starts_with(field),
            "{command}: {}",
            reply.detail
        );
    }
}

/// covers: gateway.NonPositiveQuantityRejected
#[test]
fn zero_and_negative_quantities_are_not_positive() {
    for quantity in [json!(0), json!(-1), json!(i64::MIN), json!(-1e300)] {
        let reply = check(&receive(quantity.clone())).expect_err("refused");
        assert_eq!(reply.error, ApiError::QuantityNotPositive, "{quantity}");
        assert_eq!(reply.http_status(), 422);
    }
}

/// covers: gateway.QuantityAboveMaxRejected
#[test]
fn quantities_above_the_domain_maximum_are_refused_even_beyond_i64() {
    for quantity in [
        json!(1_000_001),
        json!(i64::MAX),
        json!(u64::MAX),
        json!(1e300),
    ] {
        let reply = check(&receive(quantity.clone())).expect_err("refused");
        assert_eq!(reply.error, ApiError::QuantityAboveMax, "{quantity}");
        assert_eq!(reply.http_status(), 422);
    }
}

/// The problems of `gateway.SubmitRequest`, in the spec's order.
const ORDER: [ApiError; 9] = [
    ApiError::UnsupportedMediaType,
    ApiError::BodyTooLarge,
    ApiError::MalformedJson,
    ApiError::MissingIdempotencyKey,
    ApiError::IdempotencyKeyTooLong,
    ApiError::UnknownCommand,
    ApiError::InvalidField,
    ApiError::QuantityNotPositive,
    ApiError::QuantityAboveMax,
];

fn request_with(problems: &[bool; 9], kind: usize) -> (Option<&'static str>, Vec<u8>) {
    let has = |error: ApiError| problems[ORDER.iter().position(|e| *e == error).expect("listed")];
    let content_type = if has(ApiError::UnsupportedMediaType) {
        "text/plain"
    } else {
        "application/json"
    };
    let kind_name = ["receive", "ship", "transfer"][kind];
    let quantity = if has(ApiError::QuantityNotPositive) {
        json!(0)
    } else if has(ApiError::QuantityAboveMax) {
        json!(1_000_001)
    } else {
        json!(3)
    };
    let sku = if has(ApiError::InvalidField) {
        json!("")
    } else {
        json!("s")
    };
    let mut command = if kind_name == "transfer" {
        json!({"from": "a", "to": "b", "sku": sku, "quantity": quantity})
    } else {
        json!({"warehouse": "w", "sku": sku, "quantity": quantity})
    };
    command["type"] = json!(if has(ApiError::UnknownCommand) {
        "refund"
    } else {
        kind_name
    });
    let mut body = json!({"command": command});
    if !has(ApiError::MissingIdempotencyKey) {
        let key = if has(ApiError::IdempotencyKeyTooLong) {
            "k".repeat(129)
        } else {
            "k".to_owned()
        };
        body["idempotency_key"] = json!(key);
    }
    let mut bytes = body.to_string().into_bytes();
    if has(ApiError::MalformedJson) {
        bytes.pop();
    }
    if has(ApiError::BodyTooLarge) {
        bytes.resize(GatewayConfig::default().max_body_bytes + 1, b' ');
    }
    (Some(content_type), bytes)
}

proptest! {
    /// covers: gateway.WrongContentTypeRejected, gateway.OversizedBodyRejected, gateway.MalformedJsonRejected, gateway.MissingIdempotencyKeyRejected, gateway.IdempotencyKeyTooLongRejected, gateway.UnknownCommandTypeRejected, gateway.InvalidCommandFieldRejected, gateway.NonPositiveQuantityRejected, gateway.QuantityAboveMaxRejected
    #[test]
    fn the_first_problem_in_spec_order_names_the_answer(
        problems in proptest::array::uniform9(any::<bool>()),
        kind in 0usize..3,
    ) {
        let (content_type, body) = request_with(&problems, kind);
        let result = validate_submission(content_type, &body, &GatewayConfig::default());
        match problems.iter().position(|has| *has) {
            Some(first) => prop_assert_eq!(result.map(|_| ()).map_err(|r| r.error), Err(ORDER[first])),
            None => prop_assert!(result.is_ok()),
        }
    }

    #[test]
    fn arbitrary_bytes_are_answered_never_panicking(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let result = validate_submission(JSON, &body, &GatewayConfig::default());
        if let Err(reply) = result {
            prop_assert!(ORDER.contains(&reply.error));
        }
    }
}
