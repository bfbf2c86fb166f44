//! The run's history: one JSON line per scheduled submission, streamed to
//! `history.jsonl` as submissions complete (so in completion order). The
//! chaos checker reads the same records.
//!
//! Times are microseconds on the run's monotonic clock ([`RunClock`]):
//! `summary.json` gives the wall-clock instant of its zero.

use std::fs::File;
use std::io::{self, BufRead as _, BufReader, BufWriter, Write as _};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::workload::Command;

/// The run's time zero, on the monotonic clock and on the wall clock.
#[derive(Clone, Copy, Debug)]
pub struct RunClock {
    pub origin: Instant,
    pub wall_origin: SystemTime,
}

impl RunClock {
    pub fn start() -> Self {
        Self {
            origin: Instant::now(),
            wall_origin: SystemTime::now(),
        }
    }

    /// Microseconds from the origin to `instant` (0 for instants before it).
    pub fn micros(&self, instant: Instant) -> u64 {
        duration_micros(instant.saturating_duration_since(self.origin))
    }

    /// Milliseconds since the Unix epoch of the origin.
    pub fn wall_origin_unix_millis(&self) -> u64 {
        self.wall_origin
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// A duration in whole microseconds, saturating.
pub fn duration_micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// How one scheduled submission ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Completion {
    /// An HTTP answer, any status; the body as text (answers are JSON).
    Answered { status: u16, body: String },
    /// No answer: connect failure, broken connection, protocol error.
    Failed { error: String, detail: String },
    /// No complete answer within the client timeout.
    TimedOut,
    /// Never sent: the generator could not start it within the lag bound.
    Dropped,
}

/// One scheduled submission and what became of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    /// Place in the arrival schedule.
    pub index: u64,
    pub key: String,
    pub command: Command,
    /// Re-sends an earlier submission on purpose.
    pub duplicate: bool,
    /// Which of the target URLs it was (or would have been) sent to.
    pub target: u32,
    pub intended_us: u64,
    /// `None` when dropped.
    pub sent_us: Option<u64>,
    /// When the answer or error arrived; `None` when dropped.
    pub completed_us: Option<u64>,
    pub completion: Completion,
}

/// Streams records as JSON lines through a buffer.
#[derive(Debug)]
pub struct HistoryWriter {
    out: BufWriter<File>,
    written: u64,
}

impl HistoryWriter {
    pub fn create(path: &Path) -> io::Result<Self> {
        Ok(Self {
            out: BufWriter::with_capacity(1 << 20, File::create(path)?),
            written: 0,
        })
    }

    pub fn write(&mut self, record: &HistoryRecord) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, record).map_err(io::Error::other)?;
        self.out.write_all(b"\n")?;
        self.written += 1;
        Ok(())
    }

    /// Flushes and reports how many records were written.
    pub fn finish(mut self) -> io::Result<u64> {
        self.out.flush()?;
        self.out.get_ref().sync_data()?;
        Ok(self.written)
    }
}

/// Reads a history file back (the chaos checker's and the tests' way in).
pub fn read_history(path: &Path) -> io::Result<Vec<HistoryRecord>> {
    let reader = BufReader::new(File::open(path)?);
    let mut records = Vec::new();
    for (number, line) in reader.lines().enumerate() {
        let line = line?;
        let record = serde_json::from_str(&line).map_err(|error| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("history line {}: {error}", number + 1),
            )
        })?;
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("history.jsonl");
        let answered = HistoryRecord {
            index: 0,
            key: "t-0".to_owned(),
            command: Command::Receive {
                warehouse: "wh-0".to_owned(),
                sku: "t-sku-0".to_owned(),
                quantity: 3,
            },
            duplicate: false,
            target: 1,
            intended_us: 0,
            sent_us: Some(12),
            completed_us: Some(900),
            completion: Completion::Answered {
                status: 200,
                body: r#"{"verdict":"accepted"}"#.to_owned(),
            },
        };
        let dropped = HistoryRecord {
            index: 1,
            sent_us: None,
            completed_us: None,
            completion: Completion::Dropped,
            ..answered.clone()
        };
        let mut writer = HistoryWriter::create(&path).expect("create");
        writer.write(&answered).expect("write");
        writer.write(&dropped).expect("write");
        assert_eq!(writer.finish().expect("flush"), 2);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            text.contains(r#""completion":{"kind":"dropped"}"#),
            "{text}"
        );
        assert!(text.contains(r#""command":{"type":"receive""#), "{text}");
        assert_eq!(read_history(&path).expect("parse"), vec![answered, dropped]);
    }
}
