//! What is sent: inventory commands with idempotency keys, drawn from a
//! seeded generator so that a seed names the whole command sequence.
//!
//! Skus carry a per-run tag, so a run's stock levels start at zero and
//! belong to it alone even on a cluster that served earlier runs; the
//! correctness pass relies on that. Key skew picks the sku (commands are
//! routed to partitions by sku, so a hot sku is also a hot partition);
//! warehouses are uniform.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution as _, Zipf};
use serde::Serialize;

/// A command as the HTTP API spells it (`{"type":"receive",...}`): the
/// domain's own command, whose serde form is the API's.
pub use domain::inventory::InventoryCommand as Command;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CommandKind {
    Receive,
    Ship,
    Transfer,
}

impl CommandKind {
    pub fn of(command: &Command) -> Self {
        match command {
            Command::Receive { .. } => Self::Receive,
            Command::Ship { .. } => Self::Ship,
            Command::Transfer { .. } => Self::Transfer,
        }
    }
}

/// One POST /v1/commands: a key and a command; `duplicate` when it re-sends
/// an earlier submission (same key, same command) on purpose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submission {
    pub key: String,
    pub command: Command,
    pub duplicate: bool,
}

#[derive(Serialize)]
struct SubmitBody<'a> {
    idempotency_key: &'a str,
    command: &'a Command,
}

impl Submission {
    /// The request body (`gateway` validation: `idempotency_key`, `command`).
    pub fn body(&self) -> Bytes {
        let body = SubmitBody {
            idempotency_key: &self.key,
            command: &self.command,
        };
        Bytes::from(serde_json::to_vec(&body).expect("strings and integers always serialise"))
    }
}

/// How the sku of each command is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Skew {
    Uniform,
    /// Zipf with exponent `s` over the skus (sku 0 the hottest).
    Zipf(f64),
}

impl FromStr for Skew {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.split_once(':') {
            None if text == "uniform" => Ok(Self::Uniform),
            Some(("zipf", exponent)) => match exponent.parse::<f64>() {
                Ok(s) if s.is_finite() && s > 0.0 => Ok(Self::Zipf(s)),
                _ => Err(format!(
                    "zipf exponent must be a number > 0, got {exponent:?}"
                )),
            },
            _ => Err(format!("expected uniform or zipf:<s>, got {text:?}")),
        }
    }
}

impl fmt::Display for Skew {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uniform => f.write_str("uniform"),
            Self::Zipf(s) => write!(f, "zipf:{s}"),
        }
    }
}

/// Relative weights of the command kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mix {
    pub receive: u32,
    pub ship: u32,
    pub transfer: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Self {
            receive: 50,
            ship: 30,
            transfer: 20,
        }
    }
}

impl Mix {
    fn total(&self) -> u32 {
        self.receive + self.ship + self.transfer
    }

    fn pick(&self, draw: u32) -> CommandKind {
        if draw < self.receive {
            CommandKind::Receive
        } else if draw < self.receive + self.ship {
            CommandKind::Ship
        } else {
            CommandKind::Transfer
        }
    }
}

impl FromStr for Mix {
    type Err = String;

    /// `receive=50,ship=30,transfer=20`; kinds left out weigh 0.
    fn from_str(text: &str) -> Result<Self, String> {
        let mut mix = Self {
            receive: 0,
            ship: 0,
            transfer: 0,
        };
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kind, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("expected kind=weight, got {part:?}"))?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("weight of {kind} must be a whole number, got {weight:?}"))?;
            match kind.trim() {
                "receive" => mix.receive = weight,
                "ship" => mix.ship = weight,
                "transfer" => mix.transfer = weight,
                other => return Err(format!("unknown command kind {other:?}")),
            }
        }
        if mix.total() == 0 {
            return Err("at least one command kind needs a positive weight".to_owned());
        }
        Ok(mix)
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "receive={},ship={},transfer={}",
            self.receive, self.ship, self.transfer
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadConfig {
    pub warehouses: u32,
    pub skus: u32,
    pub skew: Skew,
    pub mix: Mix,
    /// Probability that a submission re-sends an earlier one.
    pub duplicate_rate: f64,
    pub seed: u64,
    /// Makes keys and skus unique to the run.
    pub run_tag: String,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum WorkloadError {
    #[error("at least one warehouse and one sku are needed")]
    EmptyUniverse,
    #[error("transfers need at least two warehouses")]
    TransferNeedsTwoWarehouses,
    #[error("the duplicate rate must be within 0..1, got {0}")]
    DuplicateRate(f64),
    #[error("the zipf exponent {0} is not usable: {1}")]
    Zipf(f64, String),
    #[error("the run tag must be 1 to 32 characters of [A-Za-z0-9_-], got {0:?}")]
    RunTag(String),
}

/// Earlier fresh submissions a duplicate may re-send: the last this many.
/// Far inside the idempotency window (minutes) at any rate this generator
/// reaches.
pub const DUPLICATE_WINDOW: usize = 4_096;

/// Quantities are drawn from 1..=this for receives and 1..=this/2 for ships
/// and transfers, so stock accumulates and most ships can be served.
const MAX_RECEIVE_QUANTITY: i64 = 100;

/// The seeded command sequence.
#[derive(Debug)]
pub struct Workload {
    config: WorkloadConfig,
    rng: ChaCha8Rng,
    zipf: Option<Zipf<f64>>,
    warehouses: Vec<String>,
    skus: Vec<String>,
    recent: VecDeque<Submission>,
    fresh: u64,
}

impl Workload {
    pub fn new(config: WorkloadConfig) -> Result<Self, WorkloadError> {
        if config.warehouses == 0 || config.skus == 0 {
            return Err(WorkloadError::EmptyUniverse);
        }
        if config.mix.transfer > 0 && config.warehouses < 2 {
            return Err(WorkloadError::TransferNeedsTwoWarehouses);
        }
        if !(0.0..1.0).contains(&config.duplicate_rate) {
            return Err(WorkloadError::DuplicateRate(config.duplicate_rate));
        }
        let tag_ok = (1..=32).contains(&config.run_tag.len())
            && config
                .run_tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !tag_ok {
            return Err(WorkloadError::RunTag(config.run_tag.clone()));
        }
        let zipf = match config.skew {
            Skew::Uniform => None,
            Skew::Zipf(s) => Some(
                Zipf::new(f64::from(config.skus), s)
                    .map_err(|error| WorkloadError::Zipf(s, error.to_string()))?,
            ),
        };
        let warehouses = (0..config.warehouses).map(|w| format!("wh-{w}")).collect();
        let skus = (0..config.skus)
            .map(|s| format!("{}-sku-{s}", config.run_tag))
            .collect();
        Ok(Self {
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            config,
            zipf,
            warehouses,
            skus,
            recent: VecDeque::with_capacity(DUPLICATE_WINDOW),
            fresh: 0,
        })
    }

    pub fn config(&self) -> &WorkloadConfig {
        &self.config
    }

    /// The next submission: a duplicate of a recent one with probability
    /// `duplicate_rate` (once there is one), a fresh command otherwise.
    pub fn next_submission(&mut self) -> Submission {
        let duplicate = self.rng.random::<f64>() < self.config.duplicate_rate;
        if duplicate && !self.recent.is_empty() {
            let pick = self.rng.random_range(0..self.recent.len());
            let mut submission = self.recent[pick].clone();
            submission.duplicate = true;
            return submission;
        }
        let submission = Submission {
            key: format!("{}-{}", self.config.run_tag, self.fresh),
            command: self.fresh_command(),
            duplicate: false,
        };
        self.fresh += 1;
        if self.recent.len() == DUPLICATE_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(submission.clone());
        submission
    }

    fn fresh_command(&mut self) -> Command {
        let kind = self
            .config
            .mix
            .pick(self.rng.random_range(0..self.config.mix.total()));
        let sku_index = self.sku_index();
        let sku = self.skus[sku_index].clone();
        let warehouse_count = self.warehouses.len();
        let first = self.rng.random_range(0..warehouse_count);
        let warehouse = self.warehouses[first].clone();
        match kind {
            CommandKind::Receive => Command::Receive {
                warehouse,
                sku,
                quantity: self.rng.random_range(1..=MAX_RECEIVE_QUANTITY),
            },
            CommandKind::Ship => Command::Ship {
                warehouse,
                sku,
                quantity: self.rng.random_range(1..=MAX_RECEIVE_QUANTITY / 2),
            },
            CommandKind::Transfer => {
                // Another warehouse, uniformly: skip over the first.
                let other = (first + self.rng.random_range(1..warehouse_count)) % warehouse_count;
                Command::Transfer {
                    from: warehouse,
                    to: self.warehouses[other].clone(),
                    sku,
                    quantity: self.rng.random_range(1..=MAX_RECEIVE_QUANTITY / 2),
                }
            }
        }
    }

    fn sku_index(&mut self) -> usize {
        match &self.zipf {
            None => self.rng.random_range(0..self.skus.len()),
            // Zipf samples are whole numbers in 1..=skus.
            Some(zipf) => (zipf.sample(&mut self.rng) as usize - 1).min(self.skus.len() - 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use super::*;

    fn config(skew: Skew, duplicate_rate: f64) -> WorkloadConfig {
        WorkloadConfig {
            warehouses: 4,
            skus: 100,
            skew,
            mix: Mix::default(),
            duplicate_rate,
            seed: 7,
            run_tag: "t1".to_owned(),
        }
    }

    fn draw(config: WorkloadConfig, count: usize) -> Vec<Submission> {
        let mut workload = Workload::new(config).expect("valid workload");
        (0..count).map(|_| workload.next_submission()).collect()
    }

    #[test]
    fn the_mix_and_duplicate_rate_hold_within_tolerance_for_a_seed() {
        let submissions = draw(config(Skew::Uniform, 0.1), 20_000);
        let duplicates = submissions.iter().filter(|s| s.duplicate).count();
        assert!((1_800..=2_200).contains(&duplicates), "{duplicates}");
        let mut kinds: BTreeMap<CommandKind, usize> = BTreeMap::new();
        let fresh: Vec<&Submission> = submissions.iter().filter(|s| !s.duplicate).collect();
        for submission in &fresh {
            *kinds
                .entry(CommandKind::of(&submission.command))
                .or_default() += 1;
        }
        let share = |kind| kinds[&kind] as f64 / fresh.len() as f64;
        assert!(
            (share(CommandKind::Receive) - 0.5).abs() < 0.02,
            "{kinds:?}"
        );
        assert!((share(CommandKind::Ship) - 0.3).abs() < 0.02, "{kinds:?}");
        assert!(
            (share(CommandKind::Transfer) - 0.2).abs() < 0.02,
            "{kinds:?}"
        );
    }

    #[test]
    fn duplicates_resend_an_earlier_key_with_its_command_and_fresh_keys_are_unique() {
        let submissions = draw(config(Skew::Uniform, 0.3), 5_000);
        let mut by_key: HashMap<&str, &Command> = HashMap::new();
        for submission in &submissions {
            match by_key.get(submission.key.as_str()) {
                Some(command) => {
                    assert!(submission.duplicate, "{} reused", submission.key);
                    assert_eq!(*command, &submission.command);
                }
                None => {
                    assert!(
                        !submission.duplicate,
                        "{} duplicates nothing",
                        submission.key
                    );
                    by_key.insert(&submission.key, &submission.command);
                }
            }
        }
    }

    #[test]
    fn zipf_skew_concentrates_on_the_first_skus_and_uniform_does_not() {
        let hottest_share = |skew| {
            let submissions = draw(config(skew, 0.0), 20_000);
            let hot = submissions
                .iter()
                .filter(|s| s.command.sku() == "t1-sku-0")
                .count();
            hot as f64 / submissions.len() as f64
        };
        // Zipf(s=1) over 100 items: P(first) = 1 / H(100) ≈ 0.193.
        let zipf = hottest_share(Skew::Zipf(1.0));
        assert!((zipf - 0.193).abs() < 0.02, "{zipf}");
        let uniform = hottest_share(Skew::Uniform);
        assert!((uniform - 0.01).abs() < 0.005, "{uniform}");
    }

    #[test]
    fn a_seed_names_the_sequence_and_transfers_name_two_warehouses() {
        let first = draw(config(Skew::Zipf(1.1), 0.05), 1_000);
        assert_eq!(first, draw(config(Skew::Zipf(1.1), 0.05), 1_000));
        let mut other_seed = config(Skew::Zipf(1.1), 0.05);
        other_seed.seed = 8;
        assert_ne!(first, draw(other_seed, 1_000));
        for submission in &first {
            if let Command::Transfer { from, to, .. } = &submission.command {
                assert_ne!(from, to);
            }
        }
    }

    #[test]
    fn the_body_is_what_the_gateway_validates() {
        let submission = Submission {
            key: "t1-0".to_owned(),
            command: Command::Transfer {
                from: "wh-0".to_owned(),
                to: "wh-1".to_owned(),
                sku: "t1-sku-3".to_owned(),
                quantity: 5,
            },
            duplicate: false,
        };
        assert_eq!(
            submission.body(),
            Bytes::from_static(
                br#"{"idempotency_key":"t1-0","command":{"type":"transfer","from":"wh-0","to":"wh-1","sku":"t1-sku-3","quantity":5}}"#
            )
        );
    }

    #[test]
    fn flags_parse_and_bad_ones_are_refused() {
        assert_eq!("uniform".parse::<Skew>(), Ok(Skew::Uniform));
        assert_eq!("zipf:1.2".parse::<Skew>(), Ok(Skew::Zipf(1.2)));
        assert!("zipf:0".parse::<Skew>().is_err());
        assert!("pareto".parse::<Skew>().is_err());
        assert_eq!(
            "receive=1,transfer=3".parse::<Mix>(),
            Ok(Mix {
                receive: 1,
                ship: 0,
                transfer: 3
            })
        );
        assert!("receive=0".parse::<Mix>().is_err());
        assert!("refund=1".parse::<Mix>().is_err());
        let mut one_warehouse = config(Skew::Uniform, 0.0);
        one_warehouse.warehouses = 1;
        assert_eq!(
            Workload::new(one_warehouse).err(),
            Some(WorkloadError::TransferNeedsTwoWarehouses)
        );
    }
}
