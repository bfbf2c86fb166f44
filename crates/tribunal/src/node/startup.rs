//! Everything before the actors start: the cluster key, the Ledger, the
//! topics, each partition's log bounds, and recovery's decision.

use std::time::{Duration, Instant};

use arbiter::ArbiterConfig;
use broker::{BrokerKind, Topics};
use protocol::position::{Offset, Partition};
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::cluster::CLUSTER_KEY_ENV;
use crate::lifecycle::{InstanceStatus, Lifecycle, LogBounds};
use crate::node::args::NodeArgs;
use crate::node::exit;
use crate::pipeline::Cores;
use ledger::LedgerConfig;

/// How long a starting node waits for the broker to answer.
const BROKER_DEADLINE: Duration = Duration::from_secs(60);
const WATERMARK_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StartFailure {
    #[error("configuration: {0}")]
    Configuration(String),
    #[error("the Ledger in the data directory cannot be opened: {0}")]
    Ledger(String),
    #[error("the broker: {0}")]
    Broker(String),
    #[error("recovery halted: {0}")]
    Halted(String),
}

impl StartFailure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Configuration(_) => exit::CONFIGURATION,
            Self::Ledger(_) | Self::Broker(_) => exit::COULD_NOT_START,
            Self::Halted(_) => exit::HALTED,
        }
    }
}

/// What the actors start from.
#[derive(Debug)]
pub struct Started {
    pub cluster_key: Vec<u8>,
    pub topics: Topics,
    pub cores: Cores,
    pub lifecycle: Lifecycle,
    /// Per partition: the log end when recovery started.
    pub log_ends: Vec<(Partition, Offset)>,
}

/// Opens the Ledger (only what the last synced commit wrote survives a
/// crash: every cache, queue and agreement is rebuilt here) and lets
/// recovery decide, from this instance's own watermark and the log alone
/// (no peer is waited for), where each partition replays from.
///
/// spec: recovery.ProcessCrashKeepsOnlyDurableState, recovery.SimultaneousRestartLosesNothing
pub fn start(args: &NodeArgs) -> Result<Started, StartFailure> {
    let cluster_key = cluster_key()?;
    if args.id >= args.topology.instances {
        return Err(StartFailure::Configuration(format!(
            "--id {} is not below --instances {}",
            args.id, args.topology.instances
        )));
    }
    let topics = Topics::new(args.topology.partitions);
    let arbiter_config = ArbiterConfig {
        corrupt_outputs_for_detection_test: args.corrupt_outputs_for_detection_test,
        ..ArbiterConfig::default()
    };
    if args.corrupt_outputs_for_detection_test {
        tracing::warn!("TEST ONLY: this instance corrupts its outputs");
    }
    let ledger_config = LedgerConfig::for_instance(args.topology.partitions, args.id);
    let cores = Cores::open(&args.data_dir, ledger_config, arbiter_config)
        .map_err(|error| StartFailure::Ledger(error.to_string()))?;
    let profile = args.broker_profile();
    if profile.kind == BrokerKind::External {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| StartFailure::Broker(error.to_string()))?;
        runtime
            .block_on(broker::ensure_external_topics(&profile, &topics))
            .map_err(|error| StartFailure::Broker(error.to_string()))?;
    }
    let bounds = log_bounds(args, &topics)?;
    let mut lifecycle = Lifecycle::start(args.id, args.topology.instances)
        .map_err(|error| StartFailure::Configuration(format!("{error:?}")))?;
    let loaded: Vec<(Partition, Offset, LogBounds)> = bounds
        .iter()
        .map(|&(partition, bounds)| {
            let applied = cores
                .watermarks
                .iter()
                .find(|watermark| watermark.partition == partition)
                .expect("the Ledger holds every input partition's watermark")
                .applied_offset;
            (partition, applied, bounds)
        })
        .collect();
    // Each partition replays from its watermark + 1: the Usher's
    // assignments say so; only a halt needs looking at here.
    lifecycle
        .watermarks_loaded(&loaded)
        .map_err(|error| StartFailure::Configuration(format!("{error:?}")))?;
    if lifecycle.status() == InstanceStatus::Halted {
        return Err(StartFailure::Halted(format!(
            "{:?} (watermarks {:?})",
            lifecycle.halt_record(),
            loaded
        )));
    }
    tracing::info!(
        instance = args.id,
        ?loaded,
        status = ?lifecycle.status(),
        "recovery starts"
    );
    Ok(Started {
        cluster_key,
        topics,
        cores,
        lifecycle,
        log_ends: bounds
            .iter()
            .map(|&(partition, bounds)| (partition, bounds.log_end_offset))
            .collect(),
    })
}

fn cluster_key() -> Result<Vec<u8>, StartFailure> {
    let text = std::env::var(CLUSTER_KEY_ENV)
        .map_err(|_| StartFailure::Configuration(format!("{CLUSTER_KEY_ENV} (hex) is not set")))?;
    let text = text.trim();
    if text.len() < 32 || text.len() % 2 != 0 {
        return Err(StartFailure::Configuration(format!(
            "{CLUSTER_KEY_ENV} must be an even number of hex digits, at least 32"
        )));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| StartFailure::Configuration(format!("{CLUSTER_KEY_ENV} is not hex")))
}

/// Each input partition's log start and end, retried until the broker
/// answers or the deadline passes.
fn log_bounds(
    args: &NodeArgs,
    topics: &Topics,
) -> Result<Vec<(Partition, LogBounds)>, StartFailure> {
    let consumer: BaseConsumer = args
        .broker_profile()
        .consumer_config(&format!("tribunal-{}-bounds", args.id))
        .create()
        .map_err(|error| StartFailure::Broker(error.to_string()))?;
    let started = Instant::now();
    (0..topics.partitions)
        .map(|partition| loop {
            let kafka_partition = i32::try_from(partition).expect("partition numbers fit i32");
            match consumer.fetch_watermarks(&topics.input, kafka_partition, WATERMARK_REQUEST_TIMEOUT)
            {
                Ok((low, high)) => {
                    return Ok((
                        partition,
                        LogBounds {
                            log_start_offset: low,
                            log_end_offset: high,
                        },
                    ));
                }
                Err(error) if started.elapsed() < BROKER_DEADLINE => {
                    tracing::warn!(partition, %error, "the broker does not answer yet; retrying");
                    // A retry backoff while the broker starts.
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(error) => {
                    return Err(StartFailure::Broker(format!(
                        "no log bounds for partition {partition} after {BROKER_DEADLINE:?}: {error}"
                    )));
                }
            }
        })
        .collect()
}
