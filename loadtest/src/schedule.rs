//! The arrival schedule: when each request is *meant* to be sent.
//!
//! An open-loop generator sends request `i` at its intended time whatever
//! happened to earlier requests, and measures latency from that time; the
//! schedule is the single source of those times. It is a sequence of
//! segments whose rate changes linearly (a constant rate is a segment whose
//! two rates are equal), and request `i` is intended at the time `t` where the
//! integral of the rate from 0 to `t` reaches `i` (so request 0 goes at 0).

use std::time::Duration;

/// One piece of the schedule: the rate moves linearly from `from_rps` to
/// `to_rps` over `duration`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Segment {
    pub duration: Duration,
    pub from_rps: f64,
    pub to_rps: f64,
}

impl Segment {
    pub fn constant(rps: f64, duration: Duration) -> Self {
        Self {
            duration,
            from_rps: rps,
            to_rps: rps,
        }
    }

    pub fn ramp(from_rps: f64, to_rps: f64, duration: Duration) -> Self {
        Self {
            duration,
            from_rps,
            to_rps,
        }
    }

    /// Requests intended in the first `seconds` of the segment (the integral
    /// of the rate), as a real number.
    fn arrivals_within(&self, seconds: f64) -> f64 {
        let span = self.duration.as_secs_f64();
        let slope = if span > 0.0 {
            (self.to_rps - self.from_rps) / span
        } else {
            0.0
        };
        self.from_rps * seconds + slope * seconds * seconds / 2.0
    }

    /// The offset into the segment at which `arrivals` requests have been
    /// intended: the positive root of `from·t + slope·t²/2 = arrivals`, in
    /// the form that stays exact when the slope is zero.
    fn time_of(&self, arrivals: f64) -> f64 {
        let span = self.duration.as_secs_f64();
        let slope = if span > 0.0 {
            (self.to_rps - self.from_rps) / span
        } else {
            0.0
        };
        let root = (self.from_rps * self.from_rps + 2.0 * slope * arrivals)
            .max(0.0)
            .sqrt();
        let denominator = self.from_rps + root;
        if denominator > 0.0 {
            2.0 * arrivals / denominator
        } else {
            0.0
        }
    }
}

/// Why a schedule cannot be built.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    #[error("a rate must be a finite number >= 0, got {0}")]
    InvalidRate(f64),
    #[error("the schedule is empty: no segment has a positive duration and rate")]
    Empty,
}

/// Consecutive segments and the arrivals intended before each of them.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    segments: Vec<Segment>,
    /// `arrivals_before[k]`: requests intended before segment `k` starts.
    arrivals_before: Vec<f64>,
    /// `starts[k]`: offset of segment `k` from the schedule's start.
    starts: Vec<Duration>,
    total: u64,
}

/// Guards the integer boundaries against floating-point noise: an integral
/// of 59_999.999_999_9 means 60_000 arrivals, as does 60_000.000_000_1.
const ARRIVAL_EPSILON: f64 = 1e-6;

impl Schedule {
    pub fn new(segments: Vec<Segment>) -> Result<Self, ScheduleError> {
        for segment in &segments {
            for rate in [segment.from_rps, segment.to_rps] {
                if !rate.is_finite() || rate < 0.0 {
                    return Err(ScheduleError::InvalidRate(rate));
                }
            }
        }
        let mut arrivals_before = Vec::with_capacity(segments.len());
        let mut starts = Vec::with_capacity(segments.len());
        let (mut arrivals, mut start) = (0.0, Duration::ZERO);
        for segment in &segments {
            arrivals_before.push(arrivals);
            starts.push(start);
            arrivals += segment.arrivals_within(segment.duration.as_secs_f64());
            start += segment.duration;
        }
        let total = (arrivals - ARRIVAL_EPSILON).ceil().max(0.0) as u64;
        if total == 0 {
            return Err(ScheduleError::Empty);
        }
        Ok(Self {
            segments,
            arrivals_before,
            starts,
            total,
        })
    }

    /// Requests in the whole schedule: those intended strictly before its end.
    pub fn total_requests(&self) -> u64 {
        self.total
    }

    pub fn duration(&self) -> Duration {
        self.segments.iter().map(|s| s.duration).sum()
    }

    /// The intended send time of request `index`, as an offset from the
    /// schedule's start; `None` past the last request.
    pub fn intended(&self, index: u64) -> Option<Duration> {
        if index >= self.total {
            return None;
        }
        let arrivals = index as f64;
        let segment = self
            .arrivals_before
            .partition_point(|before| *before <= arrivals)
            .saturating_sub(1);
        let within = self.segments[segment].time_of(arrivals - self.arrivals_before[segment]);
        let within =
            Duration::from_secs_f64(within.min(self.segments[segment].duration.as_secs_f64()));
        Some(self.starts[segment] + within)
    }

    /// How many requests are intended strictly before `offset`.
    pub fn requests_before(&self, offset: Duration) -> u64 {
        let mut arrivals = 0.0;
        for (k, segment) in self.segments.iter().enumerate() {
            let start = self.starts[k];
            if offset <= start {
                break;
            }
            let within = (offset - start).min(segment.duration).as_secs_f64();
            arrivals = self.arrivals_before[k] + segment.arrivals_within(within);
        }
        ((arrivals - ARRIVAL_EPSILON).ceil().max(0.0) as u64).min(self.total)
    }

    /// The rate the schedule asks for at `offset` (0 past the end).
    pub fn rate_at(&self, offset: Duration) -> f64 {
        for (k, segment) in self.segments.iter().enumerate() {
            let start = self.starts[k];
            if offset >= start && offset < start + segment.duration {
                let fraction = (offset - start).as_secs_f64() / segment.duration.as_secs_f64();
                return segment.from_rps + (segment.to_rps - segment.from_rps) * fraction;
            }
        }
        0.0
    }
}

/// A run's schedule and where its measured part begins: requests intended
/// before `measure_from` warm the system up and are recorded apart.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadPlan {
    pub schedule: Schedule,
    pub measure_from: Duration,
}

impl LoadPlan {
    /// `warmup` at the starting rate, then `duration` at `rps` (ramping
    /// linearly from `ramp_from` when given).
    pub fn new(
        rps: f64,
        duration: Duration,
        warmup: Duration,
        ramp_from: Option<f64>,
    ) -> Result<Self, ScheduleError> {
        let start_rps = ramp_from.unwrap_or(rps);
        let mut segments = Vec::with_capacity(2);
        if !warmup.is_zero() {
            segments.push(Segment::constant(start_rps, warmup));
        }
        segments.push(Segment::ramp(start_rps, rps, duration));
        Ok(Self {
            schedule: Schedule::new(segments)?,
            measure_from: warmup,
        })
    }

    /// Whether a request intended at `offset` belongs to the measured part.
    pub fn is_measured(&self, offset: Duration) -> bool {
        offset >= self.measure_from
    }

    /// Requests intended in the measured part.
    pub fn measured_requests(&self) -> u64 {
        self.schedule.total_requests() - self.schedule.requests_before(self.measure_from)
    }

    pub fn measured_duration(&self) -> Duration {
        self.schedule.duration().saturating_sub(self.measure_from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn a_constant_rate_spaces_requests_evenly_from_zero() {
        let schedule = Schedule::new(vec![Segment::constant(1_000.0, ms(2_000))]).expect("valid");
        assert_eq!(schedule.total_requests(), 2_000);
        for index in [0, 1, 2, 999, 1_000, 1_999] {
            let intended = schedule.intended(index).expect("inside the schedule");
            let expected = ms(index);
            let error = intended.abs_diff(expected);
            assert!(error < Duration::from_nanos(10), "{index}: {intended:?}");
        }
        assert_eq!(schedule.intended(2_000), None);
        assert_eq!(schedule.requests_before(ms(0)), 0);
        assert_eq!(schedule.requests_before(Duration::from_micros(1)), 1);
        assert_eq!(schedule.requests_before(ms(1_000)), 1_000);
        assert_eq!(schedule.requests_before(ms(5_000)), 2_000);
    }

    #[test]
    fn a_fractional_rate_rounds_the_count_up_to_the_last_request_before_the_end() {
        // 2.5 requests/s for 1 s: requests at 0 s and 0.4 s, and 0.8 s.
        let schedule = Schedule::new(vec![Segment::constant(2.5, ms(1_000))]).expect("valid");
        assert_eq!(schedule.total_requests(), 3);
        assert_eq!(schedule.intended(2), Some(ms(800)));
    }

    #[test]
    fn a_ramp_follows_the_integral_of_a_linear_rate() {
        // 0 -> 1000 rps over 1 s: N(t) = 500 t², so request i is at sqrt(i/500) s.
        let schedule = Schedule::new(vec![Segment::ramp(0.0, 1_000.0, ms(1_000))]).expect("valid");
        assert_eq!(schedule.total_requests(), 500);
        for index in [0_u64, 1, 50, 125, 499] {
            let expected = (index as f64 / 500.0).sqrt();
            let intended = schedule.intended(index).expect("inside").as_secs_f64();
            assert!((intended - expected).abs() < 1e-9, "{index}: {intended}");
        }
        // The second half second holds three quarters of the requests.
        assert_eq!(schedule.requests_before(ms(500)), 125);
        let times: Vec<Duration> = (0..500).filter_map(|i| schedule.intended(i)).collect();
        assert!(times.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn segments_follow_each_other_and_a_plan_measures_after_the_warmup() {
        let plan = LoadPlan::new(2_000.0, ms(1_000), ms(500), Some(1_000.0)).expect("valid");
        // 500 warmup requests at 1000 rps, then a ramp 1000 -> 2000 over 1 s: 1500.
        assert_eq!(plan.schedule.total_requests(), 2_000);
        assert_eq!(plan.measured_requests(), 1_500);
        assert_eq!(plan.schedule.intended(499), Some(ms(499)));
        assert_eq!(plan.schedule.intended(500), Some(ms(500)));
        assert!(!plan.is_measured(ms(499)));
        assert!(plan.is_measured(ms(500)));
        assert!((plan.schedule.rate_at(ms(1_000)) - 1_500.0).abs() < 1e-6);
        assert_eq!(plan.measured_duration(), ms(1_000));
        // Just after the ramp's midpoint: 500 + 1000·0.5 + 1000·0.25/2 = 1125.
        assert_eq!(plan.schedule.requests_before(ms(1_000)), 1_125);
    }

    #[test]
    fn rates_must_be_finite_and_non_negative_and_something_must_be_sent() {
        assert_eq!(
            Schedule::new(vec![Segment::constant(-1.0, ms(1))]),
            Err(ScheduleError::InvalidRate(-1.0))
        );
        assert!(matches!(
            Schedule::new(vec![Segment::constant(f64::NAN, ms(1))]),
            Err(ScheduleError::InvalidRate(_))
        ));
        assert_eq!(
            Schedule::new(vec![Segment::constant(0.0, ms(1_000))]),
            Err(ScheduleError::Empty)
        );
    }
}
