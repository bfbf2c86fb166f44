//! Positions in the input log and stream time.

use std::fmt;

/// An input partition number.
pub type Partition = u32;

/// A Kafka offset. `-1` stands for "before the first record" in watermarks.
pub type Offset = i64;

/// Where a command sits: the record's place in the log and the command's
/// place within the record's pack. Orders as the log does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommandPosition {
    pub partition: Partition,
    pub offset: Offset,
    pub index: u32,
}

impl fmt::Display for CommandPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}#{}", self.partition, self.offset, self.index)
    }
}

/// Stream time: milliseconds since the Unix epoch, taken from Kafka record
/// timestamps (the largest seen so far on a partition), never from a clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamTime(pub i64);

impl StreamTime {
    pub const EPOCH: StreamTime = StreamTime(0);

    pub fn millis(self) -> i64 {
        self.0
    }

    /// Stream time after a record with `timestamp`: it never goes back.
    ///
    /// spec: usher.StreamTimeIsPrefixMaximum
    pub fn advanced_by(self, timestamp: StreamTime) -> StreamTime {
        self.max(timestamp)
    }

    pub fn saturating_add_millis(self, millis: i64) -> StreamTime {
        StreamTime(self.0.saturating_add(millis))
    }
}
