//! The command line, and the line that replays one scenario run.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;

use crate::runner::BrokerChoice;
use crate::scenario::{PlanRequest, Scenario};

/// Which scenarios to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    One(Scenario),
    All,
}

impl Selection {
    pub fn scenarios(self) -> Vec<Scenario> {
        match self {
            Self::One(scenario) => vec![scenario],
            Self::All => Scenario::ALL.to_vec(),
        }
    }
}

impl FromStr for Selection {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "all" {
            Ok(Self::All)
        } else {
            text.parse().map(Self::One)
        }
    }
}

impl fmt::Display for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::One(scenario) => scenario.fmt(f),
            Self::All => f.write_str("all"),
        }
    }
}

#[derive(Clone, Debug, Parser)]
#[command(version, about = "Fault injection and history checking for Tribunal")]
pub struct Args {
    /// A scenario's name, or `all` (each in turn, each on its own cluster).
    #[arg(long, default_value = "all")]
    pub scenario: Selection,
    /// Commands submitted under load per scenario.
    #[arg(long, default_value_t = 20_000)]
    pub events: u64,
    /// Seed of the fault schedule and the workload.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Offered load, requests per second.
    #[arg(long, default_value_t = 500.0)]
    pub rps: f64,
    /// Instances in the cluster.
    #[arg(long, default_value_t = 4)]
    pub instances: u32,
    /// Input (and outcome) topic partitions. Four by default, so every
    /// scenario recovers, agrees and publishes on several partitions.
    #[arg(long, default_value_t = 4)]
    pub partitions: u32,
    /// An external Kafka-protocol broker whose topics are still empty (so
    /// one scenario per broker); default: the embedded broker.
    #[arg(long, conflicts_with = "tansu")]
    pub brokers: Option<String>,
    /// Start a fresh tansu broker (SQLite storage in a temporary directory)
    /// for each scenario.
    #[arg(long)]
    pub tansu: bool,
    /// Where each run's directory (history, report, node logs) is made.
    #[arg(long, default_value = "target/chaos")]
    pub out: PathBuf,
    /// How long a fault's targets get to be ready and caught up after it heals.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub recovery_timeout: Duration,
    /// How long the healed cluster gets to converge at the end.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub converge_timeout: Duration,
    /// Requests in flight at once (so HTTP connections).
    #[arg(long, default_value_t = 256)]
    pub connections: usize,
}

impl Args {
    /// What to derive the plan of `scenario` from.
    pub fn plan_request(&self, scenario: Scenario) -> PlanRequest {
        PlanRequest {
            scenario,
            seed: self.seed,
            events: self.events,
            rps: self.rps,
            instances: self.instances,
            partitions: self.partitions,
        }
    }
}

impl Args {
    pub fn broker(&self) -> BrokerChoice {
        match (&self.brokers, self.tansu) {
            (Some(brokers), _) => BrokerChoice::External(brokers.clone()),
            (None, true) => BrokerChoice::Tansu,
            (None, false) => BrokerChoice::Embedded,
        }
    }
}

/// The command that runs `request` again, exactly.
pub fn replay_command(request: &PlanRequest, broker: &BrokerChoice) -> String {
    let mut line = format!(
        "cargo run --release -p chaos -- --scenario {} --events {} --seed {} --rps {} \
         --instances {} --partitions {}",
        request.scenario,
        request.events,
        request.seed,
        request.rps,
        request.instances,
        request.partitions
    );
    match broker {
        BrokerChoice::Embedded => {}
        BrokerChoice::Tansu => line.push_str(" --tansu"),
        BrokerChoice::External(brokers) => {
            line.push_str(&format!(
                " --brokers {brokers} (with its topics empty again)"
            ));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replay_command_parses_back_to_the_same_request() {
        let request = PlanRequest {
            scenario: Scenario::KillDuringRecovery,
            seed: 42,
            events: 12_345,
            rps: 250.5,
            instances: 5,
            partitions: 3,
        };
        let line = replay_command(&request, &BrokerChoice::Tansu);
        let words = line
            .split_whitespace()
            .skip_while(|word| *word != "--")
            .skip(1);
        let args = Args::try_parse_from(std::iter::once("chaos").chain(words)).expect("parses");
        assert_eq!(args.scenario, Selection::One(Scenario::KillDuringRecovery));
        assert_eq!(args.plan_request(Scenario::KillDuringRecovery), request);
        assert_eq!(args.broker(), BrokerChoice::Tansu);
    }

    #[test]
    fn all_selects_every_scenario() {
        assert_eq!("all".parse::<Selection>(), Ok(Selection::All));
        assert_eq!(Selection::All.scenarios(), Scenario::ALL.to_vec());
        assert!("everything".parse::<Selection>().is_err());
    }
}
