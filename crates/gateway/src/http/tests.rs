use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use actix_web::test::{self, TestRequest};
use bytes::Bytes;
use domain::inventory::InventoryCommand;
use prost::Message as _;
use protocol::position::Partition;
use protocol::records::CommandPack;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::*;
use crate::core::{GatewayCore, SubmitAnswer};
use crate::node::{HealthSnapshot, InstanceStatus, SuspectedPeer};
use crate::packer::SubmissionId;
use crate::test_support::*;
use crate::validation::ValidSubmission;

/// A node whose answers the test scripts and which records what reached it.
struct FakeNode {
    admission: Mutex<Admission>,
    submit_answer: Mutex<SubmitAnswer>,
    submissions: Mutex<Vec<ValidSubmission>>,
    lookup_answer: Mutex<CommandLookup>,
    lookups: Mutex<Vec<(String, Option<Partition>)>>,
    health: Mutex<HealthSnapshot>,
    stock: Mutex<Option<StockLevel>>,
    registry: Arc<MetricsRegistry>,
}

fn ready_health() -> HealthSnapshot {
    HealthSnapshot {
        status: InstanceStatus::Ready,
        instance_id: 2,
        self_suspected: false,
        suspected_peers: vec![SuspectedPeer {
            instance_id: 3,
            reason: "divergent_output".into(),
        }],
        halted_partitions: vec![],
        lag: BTreeMap::from([(0, 4)]),
    }
}

fn accepted_outcome() -> AgreedOutcome {
    AgreedOutcome {
        verdict: EnvelopeVerdict::Accepted,
        bytes: Bytes::from(accepted(0, 12, 0, "k-1")),
    }
}

impl NodeHandle for FakeNode {
    fn admission(&self) -> Admission {
        *self.admission.lock().expect("lock")
    }

    async fn submit(&self, submission: ValidSubmission) -> SubmitAnswer {
        self.submissions.lock().expect("lock").push(submission);
        self.submit_answer.lock().expect("lock").clone()
    }

    async fn lookup_command(&self, key: String, partition: Option<Partition>) -> CommandLookup {
        self.lookups.lock().expect("lock").push((key, partition));
        self.lookup_answer.lock().expect("lock").clone()
    }

    async fn stock_level(&self, warehouse: String, sku: String) -> Option<StockLevel> {
        self.stock
            .lock()
            .expect("lock")
            .clone()
            .map(|level| StockLevel {
                warehouse,
                sku,
                ..level
            })
    }

    fn health(&self) -> HealthSnapshot {
        self.health.lock().expect("lock").clone()
    }

    fn metrics_text(&self) -> String {
        self.registry.render()
    }
}

fn config() -> GatewayConfig {
    GatewayConfig {
        input_partitions: 4,
        ..GatewayConfig::default()
    }
}

/// The fake, the state the app shares, and (via the fake) the registry
/// holding the HTTP metrics.
fn fake_state() -> web::Data<ApiState<FakeNode>> {
    let mut registry = MetricsRegistry::new();
    let metrics = HttpMetrics::register(&mut registry);
    let node = FakeNode {
        admission: Mutex::new(Admission::Open),
        submit_answer: Mutex::new(Ok(accepted_outcome())),
        submissions: Mutex::new(Vec::new()),
        lookup_answer: Mutex::new(CommandLookup::Unknown),
        lookups: Mutex::new(Vec::new()),
        health: Mutex::new(ready_health()),
        stock: Mutex::new(Some(StockLevel {
            warehouse: String::new(),
            sku: String::new(),
            quantity: 17,
            partition: 1,
            as_of_offset: 99,
        })),
        registry: Arc::new(registry),
    };
    web::Data::new(ApiState {
        node,
        config: config(),
        metrics,
    })
}

struct Reply {
    status: u16,
    headers: actix_web::http::header::HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

async fn call(state: &web::Data<ApiState<FakeNode>>, request: TestRequest) -> Reply {
    let app = test::init_service(app(state.clone())).await;
    let response = test::call_service(&app, request.to_request()).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = test::read_body(response).await;
    Reply {
        status,
        headers,
        body,
    }
}

fn post(content_type: Option<&str>, body: impl Into<Bytes>) -> TestRequest {
    let request = TestRequest::post()
        .uri("/v1/commands")
        .set_payload(body.into());
    match content_type {
        Some(content_type) => request.insert_header((header::CONTENT_TYPE, content_type)),
        None => request,
    }
}

fn post_json(body: &Value) -> TestRequest {
    post(Some("application/json"), body.to_string())
}

fn valid_body() -> Value {
    json!({"idempotency_key": "k-1", "command": {"type": "receive", "warehouse": "w1", "sku": "s1", "quantity": 5}})
}

/// covers: gateway.WrongContentTypeRejected, gateway.OversizedBodyRejected, gateway.MalformedJsonRejected, gateway.MissingIdempotencyKeyRejected, gateway.IdempotencyKeyTooLongRejected, gateway.UnknownCommandTypeRejected, gateway.InvalidCommandFieldRejected, gateway.NonPositiveQuantityRejected, gateway.QuantityAboveMaxRejected, gateway.RejectedSubmissionProducesNothing
#[actix_web::test]
async fn every_bad_submission_is_answered_with_its_problem_and_reaches_nothing() {
    let mut oversized = valid_body().to_string().into_bytes();
    oversized.resize(20_000, b' ');
    let command = |fields: Value| json!({"idempotency_key": "k-1", "command": fields});
    let cases: Vec<(TestRequest, u16, &str)> = vec![
        (
            post(Some("text/plain"), valid_body().to_string()),
            415,
            "unsupported_media_type",
        ),
        (
            post(None, valid_body().to_string()),
            415,
            "unsupported_media_type",
        ),
        (
            post(Some("application/json"), oversized),
            413,
            "body_too_large",
        ),
        (
            post(Some("application/json"), "{\"idempotency_key\":"),
            400,
            "malformed_json",
        ),
        (
            post_json(&json!({"command": valid_body()["command"]})),
            400,
            "missing_idempotency_key",
        ),
        (
            post_json(
                &json!({"idempotency_key": "k".repeat(129), "command": valid_body()["command"]}),
            ),
            400,
            "idempotency_key_too_long",
        ),
        (
            post_json(&command(json!({"type": "refund"}))),
            400,
            "unknown_command",
        ),
        (
            post_json(&command(
                json!({"type": "ship", "warehouse": "w", "sku": 5, "quantity": 1}),
            )),
            400,
            "invalid_field",
        ),
        (
            post_json(&command(
                json!({"type": "ship", "warehouse": "w", "sku": "s", "quantity": -3}),
            )),
            422,
            "quantity_not_positive",
        ),
        (
            post_json(&command(
                json!({"type": "ship", "warehouse": "w", "sku": "s", "quantity": 1_000_001}),
            )),
            422,
            "quantity_above_max",
        ),
    ];
    let state = fake_state();
    for (request, status, error) in cases {
        let reply = call(&state, request).await;
        assert_eq!(reply.status, status, "{error}");
        assert_eq!(
            reply.headers.get(header::CONTENT_TYPE).expect("typed"),
            "application/json"
        );
        let body = reply.json();
        assert_eq!(body["error"], error);
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{body}"
        );
    }
    assert!(
        state.node.submissions.lock().expect("lock").is_empty(),
        "nothing was submitted"
    );
    let metrics = state.node.metrics_text();
    assert!(
        metrics
            .contains("tribunal_gateway_submissions_total{result=\"unsupported_media_type\"} 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tribunal_gateway_submit_seconds_count 10\n"),
        "{metrics}"
    );
}

/// covers: gateway.OversizedBodyRejected
#[actix_web::test]
async fn a_declared_length_over_the_limit_is_refused_before_reading() {
    let state = fake_state();
    let request = post(Some("application/json"), valid_body().to_string())
        .insert_header((header::CONTENT_LENGTH, "1000000"));
    let reply = call(&state, request).await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["error"], "body_too_large");
}

/// covers: gateway.HaltedNodeRefusesSubmission, gateway.OverloadedGatewayShedsSubmission
#[actix_web::test]
async fn a_halted_or_overloaded_node_refuses_before_anything_else() {
    let state = fake_state();
    *state.node.admission.lock().expect("lock") = Admission::Halted;
    let reply = call(&state, post(Some("text/plain"), "not even json")).await;
    assert_eq!(
        (reply.status, reply.json()["error"].clone()),
        (503, json!("instance_halted"))
    );
    *state.node.admission.lock().expect("lock") = Admission::Overloaded;
    let reply = call(&state, post_json(&valid_body())).await;
    assert_eq!(
        (reply.status, reply.json()["error"].clone()),
        (503, json!("overloaded"))
    );
    assert_eq!(
        reply.headers.get(header::RETRY_AFTER).expect("Retry-After"),
        "1"
    );
    assert!(state.node.submissions.lock().expect("lock").is_empty());
}

/// covers: gateway.StatusFollowsFromOutcomeBytes, gateway.AnswerBodyIsAgreedOutcomeBytes, gateway.SuccessOnlyWhenAnswered
#[actix_web::test]
async fn the_agreed_envelope_is_answered_verbatim_with_its_verdicts_status() {
    let state = fake_state();
    let reply = call(
        &state,
        post(
            Some("application/json; charset=utf-8"),
            valid_body().to_string(),
        ),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.as_ref(), accepted(0, 12, 0, "k-1").as_slice());
    assert_eq!(
        state.node.submissions.lock().expect("lock").as_slice(),
        &[ValidSubmission {
            idempotency_key: "k-1".into(),
            command: InventoryCommand::Receive {
                warehouse: "w1".into(),
                sku: "s1".into(),
                quantity: 5
            },
        }]
    );
    for (bytes, verdict, status) in [
        (
            rejected(0, 3, 1, "k-1", "insufficient_stock"),
            EnvelopeVerdict::Rejected,
            409,
        ),
        (dead_letter(0, 4), EnvelopeVerdict::DeadLettered, 422),
    ] {
        *state.node.submit_answer.lock().expect("lock") = Ok(AgreedOutcome {
            verdict,
            bytes: Bytes::from(bytes.clone()),
        });
        let reply = call(&state, post_json(&valid_body())).await;
        assert_eq!(reply.status, status);
        assert_eq!(reply.body.as_ref(), bytes.as_slice());
    }
}

/// covers: gateway.SubmissionTimesOut, gateway.ProduceFailureAnswersUnavailable, gateway.RetryWithSameKeyIsSafe
#[actix_web::test]
async fn unanswered_submissions_name_their_key_and_say_a_retry_is_safe() {
    let state = fake_state();
    for (error, status) in [
        (ApiError::SubmitTimeout, 504),
        (ApiError::ProduceFailed, 503),
    ] {
        *state.node.submit_answer.lock().expect("lock") = Err(error);
        let reply = call(&state, post_json(&valid_body())).await;
        assert_eq!(reply.status, status);
        let body = reply.json();
        assert_eq!(body["error"], error.token());
        assert_eq!(body["idempotency_key"], "k-1");
        assert!(
            body["detail"]
                .as_str()
                .expect("detail")
                .contains("same idempotency_key")
        );
    }
}

/// covers: gateway.CommandLookupReturnsAgreedOutcome, gateway.CommandLookupUnknownKey, gateway.CommandLookupAmbiguousKey
#[actix_web::test]
async fn command_lookup_answers_found_unknown_and_ambiguous() {
    let state = fake_state();
    let reply = call(&state, TestRequest::get().uri("/v1/commands/k%201")).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"], "unknown_key");
    assert_eq!(reply.json()["idempotency_key"], "k 1");
    *state.node.lookup_answer.lock().expect("lock") = CommandLookup::Ambiguous {
        partitions: vec![0, 3],
    };
    let reply = call(&state, TestRequest::get().uri("/v1/commands/k-1")).await;
    assert_eq!(
        (reply.status, reply.json()["error"].clone()),
        (409, json!("ambiguous_key"))
    );
    *state.node.lookup_answer.lock().expect("lock") = CommandLookup::Found(accepted_outcome());
    let reply = call(&state, TestRequest::get().uri("/v1/commands/k-1?sku=s1")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.as_ref(), accepted(0, 12, 0, "k-1").as_slice());
    assert_eq!(
        state.node.lookups.lock().expect("lock").as_slice(),
        &[
            ("k 1".to_owned(), None),
            ("k-1".to_owned(), None),
            ("k-1".to_owned(), Some(partition_for_sku("s1", 4))),
        ]
    );
}

/// covers: gateway.StockLookupAnswersLocalDurableState, gateway.StockLookupRefusedUntilReady
#[actix_web::test]
async fn stock_is_served_by_a_ready_unsuspected_instance_only() {
    let state = fake_state();
    let reply = call(&state, TestRequest::get().uri("/v1/stock/w1/s1")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        std::str::from_utf8(&reply.body).expect("UTF-8"),
        r#"{"warehouse":"w1","sku":"s1","quantity":17,"partition":1,"as_of_offset":99}"#
    );
    state.node.health.lock().expect("lock").self_suspected = true;
    let reply = call(&state, TestRequest::get().uri("/v1/stock/w1/s1")).await;
    assert_eq!(
        (reply.status, reply.json()["error"].clone()),
        (503, json!("not_ready"))
    );
    *state.node.health.lock().expect("lock") = HealthSnapshot {
        status: InstanceStatus::Recovering,
        ..ready_health()
    };
    let reply = call(&state, TestRequest::get().uri("/v1/stock/w1/s1")).await;
    assert_eq!(reply.status, 503);
    *state.node.health.lock().expect("lock") = ready_health();
    *state.node.stock.lock().expect("lock") = None;
    let reply = call(&state, TestRequest::get().uri("/v1/stock/w1/s1")).await;
    assert_eq!(
        (reply.status, reply.json()["error"].clone()),
        (503, json!("not_ready"))
    );
}

/// covers: gateway.HealthReportsInstanceState
#[actix_web::test]
async fn health_is_200_only_when_ready_and_reports_the_instance() {
    let state = fake_state();
    let reply = call(&state, TestRequest::get().uri("/health")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!({"status": "ready", "instance_id": 2, "self_suspected": false,
               "suspected_peers": [{"instance_id": 3, "reason": "divergent_output"}],
               "halted_partitions": [], "lag": {"0": 4}})
    );
    for status in [
        InstanceStatus::Starting,
        InstanceStatus::Recovering,
        InstanceStatus::Halted,
    ] {
        state.node.health.lock().expect("lock").status = status;
        let reply = call(&state, TestRequest::get().uri("/health")).await;
        assert_eq!(reply.status, 503);
    }
}

/// covers: gateway.MetricsExposedAsPrometheusText
#[actix_web::test]
async fn metrics_are_prometheus_text_counting_submissions() {
    let state = fake_state();
    call(&state, post_json(&valid_body())).await;
    let reply = call(&state, TestRequest::get().uri("/metrics")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.headers.get(header::CONTENT_TYPE).expect("typed"),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = std::str::from_utf8(&reply.body).expect("UTF-8");
    assert!(text.contains("# TYPE tribunal_gateway_submissions_total counter\n"));
    assert!(
        text.contains("tribunal_gateway_submissions_total{result=\"accepted\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("tribunal_gateway_submit_seconds_bucket{le=\"+Inf\"} 1\n"),
        "{text}"
    );
}

/// covers: gateway.UnmatchedRouteAnswered
#[actix_web::test]
async fn unmatched_routes_and_methods_get_a_json_404() {
    let state = fake_state();
    for request in [
        TestRequest::get().uri("/v1/nothing"),
        TestRequest::get().uri("/v1/commands"),
        TestRequest::post().uri("/health"),
        TestRequest::get().uri("/v1/stock/only-warehouse"),
    ] {
        let reply = call(&state, request).await;
        assert_eq!(reply.status, 404);
        let body = reply.json();
        assert_eq!(body["error"], "not_found");
        assert!(
            body["detail"]
                .as_str()
                .expect("detail")
                .starts_with("no route for ")
        );
    }
}

/// A node over the real core: submissions wait on a channel until the
/// test acknowledges their pack and publishes their outcome.
struct CoreNode {
    core: Mutex<GatewayCore>,
    waiting: Mutex<HashMap<SubmissionId, oneshot::Sender<SubmitAnswer>>>,
}

impl CoreNode {
    fn deliver(&self) -> Vec<crate::packer::SealedPack> {
        let ready = self.core.lock().expect("lock").take_ready();
        let mut waiting = self.waiting.lock().expect("lock");
        for (id, answer) in ready.answers {
            if let Some(sender) = waiting.remove(&id) {
                let _ = sender.send(answer);
            }
        }
        ready.packs
    }
}

impl NodeHandle for CoreNode {
    fn admission(&self) -> Admission {
        if self.core.lock().expect("lock").is_accepting() {
            Admission::Open
        } else {
            Admission::Overloaded
        }
    }

    async fn submit(&self, submission: ValidSubmission) -> SubmitAnswer {
        let (sender, receiver) = oneshot::channel();
        let submitted = self.core.lock().expect("lock").submit(0, submission);
        let id = submitted?;
        self.waiting.lock().expect("lock").insert(id, sender);
        receiver.await.unwrap_or(Err(ApiError::SubmitTimeout))
    }

    async fn lookup_command(&self, key: String, partition: Option<Partition>) -> CommandLookup {
        self.core
            .lock()
            .expect("lock")
            .lookup_command(&key, partition)
    }

    async fn stock_level(&self, _: String, _: String) -> Option<StockLevel> {
        None
    }

    fn health(&self) -> HealthSnapshot {
        ready_health()
    }

    fn metrics_text(&self) -> String {
        String::new()
    }
}

/// covers: gateway.ValidSubmissionJoinsOpenPack, gateway.AnsweredOnlyFromPublishedOutcome
#[actix_web::test]
async fn a_valid_submission_is_packed_and_answered_from_its_publication() {
    let state = web::Data::new(ApiState {
        node: CoreNode {
            core: Mutex::new(GatewayCore::new(config())),
            waiting: Mutex::new(HashMap::new()),
        },
        config: config(),
        metrics: HttpMetrics::register(&mut MetricsRegistry::new()),
    });
    let app = test::init_service(app(state.clone())).await;
    let request = post_json(&valid_body()).to_request();
    let driver = async {
        while state.node.waiting.lock().expect("lock").is_empty() {
            tokio::task::yield_now().await;
        }
        let flush_window = config().pack_flush_window_ms;
        state.node.core.lock().expect("lock").tick(flush_window);
        let packs = state.node.deliver();
        let [pack] = packs.as_slice() else {
            panic!("one pack: {packs:?}")
        };
        assert_eq!(pack.partition, partition_for_sku("s1", 4));
        let decoded = CommandPack::decode(pack.payload.as_slice()).expect("a pack");
        assert_eq!(decoded.submissions[0].idempotency_key, "k-1");
        let mut core = state.node.core.lock().expect("lock");
        core.produce_acknowledged(pack.id, 30);
        assert!(
            core.take_ready().answers.is_empty(),
            "acknowledged is not answered"
        );
        core.publication_read(
            2,
            publication(
                pack.partition,
                30,
                vec![accepted(pack.partition, 30, 0, "k-1")],
                1,
            ),
        );
        drop(core);
        state.node.deliver();
        pack.partition
    };
    let (response, partition) = futures_util::join!(test::call_service(&app, request), driver);
    assert_eq!(response.status().as_u16(), 200);
    let body = test::read_body(response).await;
    assert_eq!(body.as_ref(), accepted(partition, 30, 0, "k-1").as_slice());
    let lookup = test::call_service(
        &app,
        TestRequest::get().uri("/v1/commands/k-1").to_request(),
    )
    .await;
    assert_eq!(test::read_body(lookup).await, body);
}

#[test]
fn the_app_factory_fits_a_multi_worker_server() {
    let state = fake_state();
    let server = actix_web::HttpServer::new(move || app(state.clone())).workers(2);
    drop(server);
}
