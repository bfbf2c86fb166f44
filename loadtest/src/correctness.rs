//! The correctness pass after the load: asks the cluster itself whether
//! what it answered during the run holds together.
//!
//! 1. Answers to one key are byte-identical (duplicates get the stored
//!    answer), and no two keys were answered with the same log position.
//! 2. Every acknowledged command has that same agreed outcome on a node
//!    (`GET /v1/commands/{key}`, spread over the targets).
//! 3. Every command sent but not acknowledged (timeout, error) is looked up
//!    too: found, it joins the audit (it may have been applied); unknown, it
//!    was not applied — or not yet: a record the gateway produced after its
//!    answer timed out, or one still behind the instances' lag, may be
//!    applied later, so unknown keys are looked up again on every audit
//!    retry.
//! 4. On every target, the stock level of every (warehouse, sku) the run
//!    touched is read, and the inventory audit (`domain::inventory::audit`)
//!    checks them against the agreed outcomes: no negative stock, stock
//!    conserved per sku, levels equal to the replay, each command applied
//!    once. The instances' levels must also be equal to each other.
//!
//! Instances apply asynchronously, so steps 3 and 4 are retried until the
//! audit holds or the settle timeout passes; the last attempt is reported.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::inventory::audit::{Audit, LevelRow};
use futures_util::StreamExt as _;
use protocol::position::CommandPosition;
use serde::{Deserialize, Serialize};

use crate::client::{Answer, HttpClient, RequestError};
use crate::measure::{AnsweredSubmission, Reading, UnansweredSubmission, body_digest, read_answer};
use crate::workload::Command;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CorrectnessConfig {
    /// Input partitions of the cluster (the audit checks routing with it).
    pub partitions: u32,
    /// Requests in flight during the pass.
    pub concurrency: usize,
    /// How long the instances get to converge on the levels.
    pub settle_timeout: Duration,
    /// Acknowledged keys looked up: the newest this many. A gateway's key
    /// index holds a bounded number of keys (`max_key_index_entries`) and
    /// evicts the oldest, so older keys may rightly be unknown there.
    pub lookup_window: usize,
}

impl CorrectnessConfig {
    /// Nine tenths of a gateway's key-index bound: keys are aged here by
    /// their place in the schedule and there by their record's timestamp,
    /// which may order keys near the boundary differently.
    pub fn lookup_window_for(key_index_bound: usize) -> usize {
        key_index_bound / 10 * 9
    }
}

/// One check and what it covered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CorrectnessReport {
    pub checks: Vec<Check>,
    /// The first violations found (at most [`MAX_LISTED_VIOLATIONS`]).
    pub violations: Vec<String>,
    pub violation_count: usize,
}

/// Violations listed in full; the rest are counted.
pub const MAX_LISTED_VIOLATIONS: usize = 50;

impl CorrectnessReport {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|check| check.passed)
    }

    fn check(&mut self, name: impl Into<String>, violations: Vec<String>, detail: String) {
        self.checks.push(Check {
            name: name.into(),
            passed: violations.is_empty(),
            detail,
        });
        self.violation_count += violations.len();
        let room = MAX_LISTED_VIOLATIONS.saturating_sub(self.violations.len());
        self.violations.extend(violations.into_iter().take(room));
    }
}

/// What one key came to during the run.
#[derive(Debug)]
struct KeyFacts<'a> {
    /// The key's first place in the schedule (its age).
    first_index: u64,
    command: &'a Command,
    /// The agreed answer (position, accepted, digest) if any answer was one.
    answer: Option<(CommandPosition, bool, u64)>,
}

/// Runs the whole pass against every target of `client`.
pub async fn check(
    client: Arc<HttpClient>,
    answered: &[AnsweredSubmission],
    unanswered: &[UnansweredSubmission],
    config: CorrectnessConfig,
) -> CorrectnessReport {
    let mut report = CorrectnessReport::default();
    let keys = consistent_answers(&mut report, answered, unanswered);
    let mut lookups = look_up_keys(&mut report, &client, &keys, config).await;
    let touched: BTreeSet<(String, String)> = keys
        .values()
        .flat_map(|facts| facts.command.levels())
        .map(|(warehouse, sku)| (warehouse.to_owned(), sku.to_owned()))
        .collect();
    audit_levels(&mut report, &client, &mut lookups, &touched, config).await;
    report
}

/// The agreed outcomes known so far, and the unacknowledged keys still
/// unknown to the cluster.
struct Lookups<'a> {
    outcomes: BTreeMap<CommandPosition, (&'a Command, bool)>,
    /// Sent without an agreed answer: how many there are in all.
    unacknowledged: usize,
    /// Of those, found with an agreed outcome.
    found: usize,
    /// Of those, unknown to the cluster at the last lookup.
    unknown: Vec<(&'a str, &'a Command)>,
    /// Of those, looked up without a usable answer.
    unresolved: Vec<String>,
}

impl<'a> Lookups<'a> {
    fn audit(&self, partitions: u32) -> Audit {
        let mut audit = Audit::new(partitions);
        for (position, (command, accepted)) in &self.outcomes {
            audit.record_outcome(*position, command, *accepted);
        }
        audit
    }

    /// Every level an accepted command wrote.
    fn written(&self) -> BTreeSet<(String, String)> {
        self.outcomes
            .values()
            .filter(|(_, accepted)| *accepted)
            .flat_map(|(command, _)| command.levels())
            .map(|(warehouse, sku)| (warehouse.to_owned(), sku.to_owned()))
            .collect()
    }

    /// Looks the unknown keys up again; those found join the outcomes.
    /// Returns whether any was found.
    async fn resolve_unknown(&mut self, client: &HttpClient, config: CorrectnessConfig) -> bool {
        let requests: Vec<String> = self
            .unknown
            .iter()
            .map(|(key, command)| lookup_path(key, command))
            .collect();
        let answers = get_all(client, &requests, config.concurrency).await;
        let before = self.found;
        let mut still_unknown = Vec::new();
        for ((key, command), answer) in std::mem::take(&mut self.unknown).into_iter().zip(answers) {
            match answer.as_ref().map(|answer| read_answer(answer, key)) {
                Ok(Reading::Agreed { position, accepted }) => {
                    self.found += 1;
                    self.outcomes.insert(position, (command, accepted));
                }
                _ => still_unknown.push((key, command)),
            }
        }
        self.unknown = still_unknown;
        self.found > before
    }

    fn report(&self, report: &mut CorrectnessReport) {
        report.check(
            "every unacknowledged command is known applied or not",
            self.unresolved.clone(),
            format!(
                "{} sent without an agreed answer: {} found (audited as agreed), {} unknown (not applied), {} unresolved",
                self.unacknowledged,
                self.found,
                self.unknown.len(),
                self.unresolved.len()
            ),
        );
    }
}

fn lookup_path(key: &str, command: &Command) -> String {
    format!(
        "/v1/commands/{}?sku={}",
        encode_component(key),
        encode_component(command.sku())
    )
}

/// Step 1: per key, every agreed answer is the same; per position, one key.
fn consistent_answers<'a>(
    report: &mut CorrectnessReport,
    answered: &'a [AnsweredSubmission],
    unanswered: &'a [UnansweredSubmission],
) -> BTreeMap<&'a str, KeyFacts<'a>> {
    let mut keys: BTreeMap<&str, KeyFacts<'_>> = BTreeMap::new();
    let mut differing = Vec::new();
    let mut repeated = 0usize;
    for submission in answered {
        let answer = (
            submission.position,
            submission.accepted,
            submission.body_digest,
        );
        let facts = keys.entry(&submission.key).or_insert(KeyFacts {
            first_index: submission.index,
            command: &submission.command,
            answer: None,
        });
        facts.first_index = facts.first_index.min(submission.index);
        match facts.answer {
            None => facts.answer = Some(answer),
            Some(first) => {
                repeated += 1;
                if first != answer {
                    differing.push(format!(
                        "key {:?} answered with different bytes: at {} and at {}",
                        submission.key, first.0, answer.0
                    ));
                }
            }
        }
    }
    for submission in unanswered {
        let facts = keys.entry(&submission.key).or_insert(KeyFacts {
            first_index: submission.index,
            command: &submission.command,
            answer: None,
        });
        facts.first_index = facts.first_index.min(submission.index);
    }
    report.check(
        "answers to one key are byte-identical",
        differing,
        format!("{repeated} repeated answers compared"),
    );
    let mut owners: HashMap<CommandPosition, &str> = HashMap::new();
    let mut shared = Vec::new();
    for (key, facts) in &keys {
        if let Some((position, ..)) = facts.answer
            && let Some(other) = owners.insert(position, key)
        {
            shared.push(format!(
                "keys {other:?} and {key:?} were both answered with position {position}"
            ));
        }
    }
    report.check(
        "no two keys share a log position",
        shared,
        format!("{} answered keys", owners.len()),
    );
    keys
}

/// Steps 2 and 3: looks up the newest acknowledged keys (the lookup
/// window) and every unacknowledged one; returns the agreed outcome of
/// every position (acknowledged or found), for the audit. Step 3 is
/// reported once the audit has settled.
async fn look_up_keys<'a>(
    report: &mut CorrectnessReport,
    client: &HttpClient,
    keys: &BTreeMap<&'a str, KeyFacts<'a>>,
    config: CorrectnessConfig,
) -> Lookups<'a> {
    let mut outcomes = BTreeMap::new();
    // The oldest acknowledged keys beyond the window are audited from the
    // answers the client holds, without a lookup.
    let mut acknowledged_ages: Vec<u64> = keys
        .values()
        .filter(|facts| facts.answer.is_some())
        .map(|facts| facts.first_index)
        .collect();
    acknowledged_ages.sort_unstable_by(|a, b| b.cmp(a));
    let oldest_looked_up = acknowledged_ages
        .get(config.lookup_window.saturating_sub(1))
        .copied()
        .unwrap_or(0);
    let mut not_looked_up = 0usize;
    let mut chosen: Vec<(&&str, &KeyFacts<'_>)> = Vec::with_capacity(keys.len());
    for (key, facts) in keys {
        match facts.answer {
            Some((position, accepted, _)) if facts.first_index < oldest_looked_up => {
                not_looked_up += 1;
                outcomes.insert(position, (facts.command, accepted));
            }
            _ => chosen.push((key, facts)),
        }
    }
    let requests: Vec<String> = chosen
        .iter()
        .map(|(key, facts)| lookup_path(key, facts.command))
        .collect();
    let answers = get_all(client, &requests, config.concurrency).await;
    let (mut missing, mut unresolved, mut unknown) = (Vec::new(), Vec::new(), Vec::new());
    let (mut acknowledged, mut found) = (0usize, 0usize);
    for ((key, facts), answer) in chosen.into_iter().zip(answers) {
        let reading = answer
            .as_ref()
            .map(|answer| (read_answer(answer, key), body_digest(&answer.body)));
        match (facts.answer, reading) {
            (Some((position, accepted, digest)), Ok((Reading::Agreed { .. }, looked_up)))
                if looked_up == digest =>
            {
                acknowledged += 1;
                outcomes.insert(position, (facts.command, accepted));
            }
            (Some((position, accepted, _)), other) => {
                acknowledged += 1;
                // Audit what was acknowledged: the client holds that answer.
                outcomes.insert(position, (facts.command, accepted));
                missing.push(format!(
                    "key {key:?} acknowledged at {position}, but the lookup gave {}",
                    describe(&other)
                ));
            }
            (None, Ok((Reading::Agreed { position, accepted }, _))) => {
                found += 1;
                outcomes.insert(position, (facts.command, accepted));
            }
            (None, Ok((Reading::Error(kind), _))) if kind == "http 404 unknown_key" => {
                unknown.push((*key, facts.command));
            }
            (None, other) => unresolved.push(format!(
                "key {key:?} (sent, not acknowledged): the lookup gave {}",
                describe(&other)
            )),
        }
    }
    report.check(
        "every acknowledged command has its agreed outcome on a node",
        missing,
        format!(
            "{acknowledged} acknowledged keys looked up, answers compared byte for byte \
             ({not_looked_up} older ones beyond the gateways' key-index window not looked up)"
        ),
    );
    Lookups {
        outcomes,
        unacknowledged: keys.len() - acknowledged - not_looked_up,
        found,
        unknown,
        unresolved,
    }
}

/// What a lookup gave, for a violation's text.
fn describe(lookup: &Result<(Reading, u64), &RequestError>) -> String {
    match lookup {
        Err(error) => format!("no answer ({error})"),
        Ok((Reading::Agreed { position, accepted }, _)) => format!(
            "a different outcome at {position} ({})",
            if *accepted { "accepted" } else { "rejected" }
        ),
        Ok((Reading::Error(kind), _)) => kind.clone(),
    }
}

#[derive(Deserialize)]
struct StockBody {
    quantity: i64,
}

/// Step 4 (and the unknown keys of step 3), retried until the instances
/// have converged or time is up.
async fn audit_levels(
    report: &mut CorrectnessReport,
    client: &HttpClient,
    lookups: &mut Lookups<'_>,
    touched: &BTreeSet<(String, String)>,
    config: CorrectnessConfig,
) {
    let deadline = Instant::now() + config.settle_timeout;
    let skus: BTreeSet<&str> = touched.iter().map(|(_, sku)| sku.as_str()).collect();
    loop {
        let audit = lookups.audit(config.partitions);
        let attempt = audit_levels_once(client, &audit, touched, &lookups.written(), config).await;
        let clean = attempt
            .iter()
            .all(|(_, violations, _)| violations.is_empty());
        if clean || Instant::now() >= deadline {
            lookups.report(report);
            for (name, violations, detail) in attempt {
                report.check(name, violations, detail);
            }
            report.checks.push(Check {
                name: "levels read".to_owned(),
                passed: true,
                detail: format!(
                    "{} levels of {} skus on each of {} targets",
                    touched.len(),
                    skus.len(),
                    client.target_count()
                ),
            });
            return;
        }
        if !lookups.resolve_unknown(client, config).await {
            // A retry period while the instances apply, not synchronisation.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// (check name, violations, detail) per target, then the cross-instance check.
async fn audit_levels_once(
    client: &HttpClient,
    audit: &Audit,
    touched: &BTreeSet<(String, String)>,
    written: &BTreeSet<(String, String)>,
    config: CorrectnessConfig,
) -> Vec<(String, Vec<String>, String)> {
    let paths: Vec<String> = touched
        .iter()
        .map(|(warehouse, sku)| {
            format!(
                "/v1/stock/{}/{}",
                encode_component(warehouse),
                encode_component(sku)
            )
        })
        .collect();
    let mut results = Vec::new();
    let mut per_instance: Vec<Vec<Option<i64>>> = Vec::new();
    for target in 0..client.target_count() {
        let answers = get_all_from(client, target, &paths, config.concurrency).await;
        let mut unreadable = Vec::new();
        let mut levels = Vec::with_capacity(touched.len());
        for ((warehouse, sku), answer) in touched.iter().zip(answers) {
            let quantity = match &answer {
                Ok(Answer { status: 200, body }) => serde_json::from_slice::<StockBody>(body)
                    .ok()
                    .map(|stock| stock.quantity),
                _ => None,
            };
            if quantity.is_none() {
                let shown = match answer {
                    Ok(answer) => format!(
                        "{} {}",
                        answer.status,
                        String::from_utf8_lossy(&answer.body)
                    ),
                    Err(error) => error.to_string(),
                };
                unreadable.push(format!(
                    "{}: stock of {warehouse:?}/{sku:?} unreadable: {shown}",
                    client.base_url(target)
                ));
            }
            levels.push(quantity);
        }
        // A level reads 0 when never written: pass it to the audit only
        // when an accepted command wrote it or it is not 0.
        let rows: Vec<LevelRow> = touched
            .iter()
            .zip(&levels)
            .filter_map(|((warehouse, sku), quantity)| {
                let quantity = (*quantity)?;
                let key = (warehouse.clone(), sku.clone());
                (quantity != 0 || written.contains(&key)).then_some((key.0, key.1, quantity))
            })
            .collect();
        let mut violations = unreadable;
        violations.extend(
            audit
                .check_levels(rows)
                .violations
                .iter()
                .map(|violation| format!("{}: {violation}", client.base_url(target))),
        );
        results.push((
            format!("inventory audit on {}", client.base_url(target)),
            violations,
            format!(
                "{} levels against {} audited outcomes",
                touched.len(),
                audit.applied_commands().len()
            ),
        ));
        per_instance.push(levels);
    }
    let mut differing = Vec::new();
    for (at, (warehouse, sku)) in touched.iter().enumerate() {
        let values: Vec<Option<i64>> = per_instance.iter().map(|levels| levels[at]).collect();
        if values.windows(2).any(|pair| pair[0] != pair[1]) {
            let mut shown = String::new();
            for (target, value) in values.iter().enumerate() {
                let _ = write!(shown, " {}={value:?}", client.base_url(target));
            }
            differing.push(format!("{warehouse:?}/{sku:?} differs:{shown}"));
        }
    }
    results.push((
        "instances hold equal levels".to_owned(),
        differing,
        format!(
            "{} levels compared across {} targets",
            touched.len(),
            client.target_count()
        ),
    ));
    results
}

/// GETs every path, spread round-robin over the targets, in order.
async fn get_all(
    client: &HttpClient,
    paths: &[String],
    concurrency: usize,
) -> Vec<Result<Answer, RequestError>> {
    futures_util::stream::iter(paths.iter().enumerate())
        .map(|(at, path)| get_with_retry(client, at, path))
        .buffered(concurrency.max(1))
        .collect()
        .await
}

/// GETs every path from one target, in order.
async fn get_all_from(
    client: &HttpClient,
    target: usize,
    paths: &[String],
    concurrency: usize,
) -> Vec<Result<Answer, RequestError>> {
    futures_util::stream::iter(paths)
        .map(|path| get_with_retry(client, target, path))
        .buffered(concurrency.max(1))
        .collect()
        .await
}

/// Tries a GET up to three times while it fails or answers 503 (a node
/// briefly not ready), then gives the last result.
async fn get_with_retry(
    client: &HttpClient,
    target: usize,
    path: &str,
) -> Result<Answer, RequestError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = client.get(target, path).await;
        let retry = match &result {
            Ok(answer) => answer.status == 503,
            Err(_) => true,
        };
        if !retry || attempt == 3 {
            return result;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Percent-encodes everything outside RFC 3986's unreserved characters.
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_percent_encoded() {
        assert_eq!(encode_component("run-1_sku.7~"), "run-1_sku.7~");
        assert_eq!(encode_component("a/b c?é"), "a%2Fb%20c%3F%C3%A9");
    }
}
