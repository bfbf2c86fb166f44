//! The HTTP shell: routes, bounded body reading, replies. Everything it
//! decides comes from the pure validation functions and the node.

use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentType};
use actix_web::{App, HttpRequest, HttpResponse, web};
use domain::inventory::partition_for_sku;
use protocol::canonical_json::ObjectWriter;
use protocol::envelope::EnvelopeVerdict;
use serde::Deserialize;

use crate::config::GatewayConfig;
use crate::error::{ApiError, ErrorReply};
use crate::key_index::CommandLookup;
use crate::metrics::{Counter, Histogram, LATENCY_BUCKETS_MICROS, MetricsRegistry};
use crate::node::{Admission, InstanceStatus, NodeHandle, StockLevel};
use crate::outcomes::AgreedOutcome;
use crate::validation::{body_too_large, check_body_size, check_media_type, validate_submission};

/// What every handler shares: the node, the bounds, the HTTP metrics.
#[derive(Debug)]
pub struct ApiState<N> {
    pub node: N,
    pub config: GatewayConfig,
    pub metrics: HttpMetrics,
}

/// Submissions by result and their latency, as the client saw it.
#[derive(Clone, Debug)]
pub struct HttpMetrics {
    by_result: Vec<(&'static str, Counter)>,
    submit_latency: Histogram,
}

/// The errors a submission can end with.
const SUBMIT_ERRORS: [ApiError; 13] = [
    ApiError::UnsupportedMediaType,
    ApiError::BodyTooLarge,
    ApiError::MalformedJson,
    ApiError::MissingIdempotencyKey,
    ApiError::IdempotencyKeyTooLong,
    ApiError::UnknownCommand,
    ApiError::InvalidField,
    ApiError::QuantityNotPositive,
    ApiError::QuantityAboveMax,
    ApiError::InstanceHalted,
    ApiError::Overloaded,
    ApiError::ProduceFailed,
    ApiError::SubmitTimeout,
];

impl HttpMetrics {
    pub fn register(registry: &mut MetricsRegistry) -> Self {
        let verdicts = [
            EnvelopeVerdict::Accepted,
            EnvelopeVerdict::Rejected,
            EnvelopeVerdict::DeadLettered,
        ]
        .map(EnvelopeVerdict::as_str);
        let results = verdicts
            .into_iter()
            .chain(SUBMIT_ERRORS.map(ApiError::token));
        let by_result = results
            .map(|result| {
                let counter = registry.counter(
                    "tribunal_gateway_submissions_total",
                    "POST /v1/commands answers, by verdict or error.",
                    &[("result", result)],
                );
                (result, counter)
            })
            .collect();
        let submit_latency = registry.histogram(
            "tribunal_gateway_submit_seconds",
            "POST /v1/commands latency, from request to answer.",
            &[],
            LATENCY_BUCKETS_MICROS,
        );
        Self {
            by_result,
            submit_latency,
        }
    }

    fn record(&self, result: &str, elapsed: Duration) {
        if let Some((_, counter)) = self.by_result.iter().find(|(r, _)| *r == result) {
            counter.increment();
        }
        self.submit_latency.observe(elapsed);
    }
}

/// The application: every route of `gateway.Route`, unmatched ones
/// answered with a JSON 404.
pub fn app<N: NodeHandle>(
    state: web::Data<ApiState<N>>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(state)
        .route("/v1/commands", web::post().to(submit::<N>))
        .route("/v1/commands/{key}", web::get().to(lookup_command::<N>))
        .route(
            "/v1/stock/{warehouse}/{sku}",
            web::get().to(stock_level::<N>),
        )
        .route("/health", web::get().to(health::<N>))
        .route("/metrics", web::get().to(metrics::<N>))
        .default_service(web::to(unmatched))
}

const HALTED_DETAIL: &str = "this node has halted; submit to another node";
const OVERLOADED_DETAIL: &str =
    "too many submissions are waiting; retry shortly with the same idempotency_key";

/// spec: gateway.HaltedNodeRefusesSubmission, gateway.OverloadedGatewayShedsSubmission, gateway.RejectedSubmissionProducesNothing
async fn submit<N: NodeHandle>(
    state: web::Data<ApiState<N>>,
    request: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let started = Instant::now();
    let (result, response) = match agreed_outcome(&state, &request, payload).await {
        Ok(outcome) => (outcome.verdict.as_str(), outcome_response(&outcome)),
        Err(reply) => {
            if reply.http_status() >= 500 {
                tracing::warn!(error = reply.error.token(), detail = %reply.detail, "submission unanswered");
            } else {
                tracing::debug!(error = reply.error.token(), detail = %reply.detail, "submission refused");
            }
            (reply.error.token(), error_response(&reply))
        }
    };
    state.metrics.record(result, started.elapsed());
    response
}

/// Admission, then the validation checks in order (content type and size
/// before the body is buffered), and only then the node: a refused
/// request reaches nothing that produces.
async fn agreed_outcome<N: NodeHandle>(
    state: &ApiState<N>,
    request: &HttpRequest,
    payload: web::Payload,
) -> Result<AgreedOutcome, ErrorReply> {
    match state.node.admission() {
        Admission::Open => {}
        Admission::Halted => return Err(ErrorReply::new(ApiError::InstanceHalted, HALTED_DETAIL)),
        Admission::Overloaded => {
            return Err(ErrorReply::new(ApiError::Overloaded, OVERLOADED_DETAIL));
        }
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|value| value.to_str().unwrap_or_default());
    check_media_type(content_type)?;
    let limit = state.config.max_body_bytes;
    let declared_length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if let Some(declared) = declared_length {
        check_body_size(declared, limit)?;
    }
    let body = match payload.to_bytes_limited(limit).await {
        Ok(Ok(body)) => body,
        Ok(Err(error)) => {
            return Err(ErrorReply::new(
                ApiError::MalformedJson,
                format!("the body could not be read: {error}"),
            ));
        }
        Err(_) => return Err(body_too_large(limit)),
    };
    let submission = validate_submission(content_type, &body, &state.config)?;
    let key = submission.idempotency_key.clone();
    state.node.submit(submission).await.map_err(|error| {
        ErrorReply::new(error, unanswered_detail(error, &state.config)).with_key(key)
    })
}

fn unanswered_detail(error: ApiError, config: &GatewayConfig) -> String {
    match error {
        ApiError::ProduceFailed => "the command could not be written to the log; it may still \
             be applied, once: retrying with the same idempotency_key is safe"
            .to_owned(),
        ApiError::SubmitTimeout => format!(
            "no agreed outcome within {} ms; the command may still be applied, once: retry \
             with the same idempotency_key or GET /v1/commands/{{key}}",
            config.submit_timeout_ms
        ),
        ApiError::Overloaded => OVERLOADED_DETAIL.to_owned(),
        ApiError::InstanceHalted => HALTED_DETAIL.to_owned(),
        other => format!("the submission was not answered: {other}"),
    }
}

#[derive(Deserialize)]
struct LookupQuery {
    sku: Option<String>,
}

/// spec: gateway.CommandLookupReturnsAgreedOutcome, gateway.CommandLookupUnknownKey, gateway.CommandLookupAmbiguousKey
async fn lookup_command<N: NodeHandle>(
    state: web::Data<ApiState<N>>,
    request: HttpRequest,
) -> HttpResponse {
    let key = request.match_info().query("key").to_owned();
    let query = match web::Query::<LookupQuery>::from_query(request.query_string()) {
        Ok(query) => query.into_inner(),
        Err(error) => {
            let reply = ErrorReply::new(ApiError::InvalidField, format!("query string: {error}"));
            return error_response(&reply.with_key(key));
        }
    };
    let partition = query
        .sku
        .as_deref()
        .map(|sku| partition_for_sku(sku, state.config.input_partitions));
    match state.node.lookup_command(key.clone(), partition).await {
        CommandLookup::Found(outcome) => outcome_response(&outcome),
        CommandLookup::Unknown => error_response(
            &ErrorReply::new(
                ApiError::UnknownKey,
                "no agreed outcome is known for this key: it may not be applied yet, or its \
                 idempotency window (stream time) may have passed",
            )
            .with_key(key),
        ),
        CommandLookup::Ambiguous { partitions } => error_response(
            &ErrorReply::new(
                ApiError::AmbiguousKey,
                format!(
                    "the key owns commands on partitions {partitions:?}; add ?sku= with the \
                     command's sku to pick one"
                ),
            )
            .with_key(key),
        ),
    }
}

/// spec: gateway.StockLookupAnswersLocalDurableState, gateway.StockLookupRefusedUntilReady
async fn stock_level<N: NodeHandle>(
    state: web::Data<ApiState<N>>,
    request: HttpRequest,
) -> HttpResponse {
    let warehouse = request.match_info().query("warehouse").to_owned();
    let sku = request.match_info().query("sku").to_owned();
    let health = state.node.health();
    let not_ready = |detail: String| error_response(&ErrorReply::new(ApiError::NotReady, detail));
    if !health.serves_reads() {
        return not_ready(format!(
            "stock of {sku:?} is served by a ready instance only; this one is {:?}{}",
            health.status,
            if health.self_suspected {
                " and self-suspected"
            } else {
                ""
            }
        ));
    }
    match state.node.stock_level(warehouse, sku.clone()).await {
        Some(level) => json_response(StatusCode::OK, stock_body(&level)),
        None => not_ready(format!(
            "stock of {sku:?}: the instance stopped serving reads"
        )),
    }
}

fn stock_body(level: &StockLevel) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    let mut object = ObjectWriter::new(&mut out);
    object
        .string("warehouse", &level.warehouse)
        .string("sku", &level.sku)
        .integer("quantity", level.quantity)
        .integer("partition", i64::from(level.partition))
        .integer("as_of_offset", level.as_of_offset);
    object.finish();
    out
}

/// spec: gateway.HealthReportsInstanceState
async fn health<N: NodeHandle>(state: web::Data<ApiState<N>>) -> HttpResponse {
    let snapshot = state.node.health();
    let status = if snapshot.status == InstanceStatus::Ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::to_vec(&snapshot).expect("a health snapshot is plain data");
    json_response(status, body)
}

/// spec: gateway.MetricsExposedAsPrometheusText
async fn metrics<N: NodeHandle>(state: web::Data<ApiState<N>>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        ))
        .body(state.node.metrics_text())
}

/// spec: gateway.UnmatchedRouteAnswered
async fn unmatched(request: HttpRequest) -> HttpResponse {
    error_response(&ErrorReply::new(
        ApiError::NotFound,
        format!("no route for {} {}", request.method(), request.path()),
    ))
}

/// The agreed envelope bytes, verbatim, with the status its verdict names.
///
/// spec: gateway.StatusFollowsFromOutcomeBytes, gateway.AnswerBodyIsAgreedOutcomeBytes
fn outcome_response(outcome: &AgreedOutcome) -> HttpResponse {
    let status = StatusCode::from_u16(outcome.http_status()).expect("a valid status");
    HttpResponse::build(status)
        .content_type(ContentType::json())
        .body(outcome.bytes.clone())
}

fn error_response(reply: &ErrorReply) -> HttpResponse {
    let status = StatusCode::from_u16(reply.http_status()).expect("a valid status");
    let mut response = HttpResponse::build(status);
    if reply.error == ApiError::Overloaded {
        response.insert_header((header::RETRY_AFTER, "1"));
    }
    response
        .content_type(ContentType::json())
        .body(reply.body())
}

fn json_response(status: StatusCode, body: Vec<u8>) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(ContentType::json())
        .body(body)
}

#[cfg(test)]
mod tests;
