//! Per-core statistics: counters and latency histograms, recorded on the request path.
//!
//! Owns: one core's counters (cumulative, the loop lag's buckets among them) and its latency
//! histograms for the current second.
//! Must never: allocate, lock or touch another core's data when recording (histograms have fixed
//! bounds, counters are plain integers). Invariant: once a second the worker hands these to the
//! board (`board.rs`), which merges whole histograms; the histograms here are then reset.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Latency histograms count microseconds from 1 µs to one hour, 2 significant digits.
pub const HIST_MAX_US: u64 = 3_600_000_000;

/// A histogram since start (on the board): 64-bit counts, since a 32-bit bucket of a busy
/// member fills within a day (about 100,000 requests a second in one bucket: 12 hours).
pub fn new_lifetime_histogram() -> Histogram<u64> {
    bounded()
}

/// Adds a core's histogram of the second to a histogram since start, bucket by bucket.
pub fn add_to_lifetime(lifetime: &mut Histogram<u64>, second: &Histogram<u32>) {
    for v in second.iter_recorded() {
        lifetime.saturating_record_n(v.value_iterated_to(), u64::from(v.count_at_value()));
    }
}

/// A fixed-bounds latency histogram (no allocation when recording).
pub fn new_histogram() -> Histogram<u32> {
    bounded()
}

/// The one set of bounds, whatever the counter's width.
fn bounded<T: hdrhistogram::Counter>() -> Histogram<T> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 2).expect("valid histogram bounds")
}

/// Which latency is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Request head received → last response byte written.
    Total = 0,
    /// Connect to the member (new connections only).
    Connect = 1,
    /// Request sent → response head received.
    ResponseHead = 2,
}

pub const PHASES: [Phase; 3] = [Phase::Total, Phase::Connect, Phase::ResponseHead];

/// Why a member failed a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    ConnectRefused = 0,
    ConnectTimeout = 1,
    ResponseTimeout = 2,
    /// Closed or reset without a response, or while sending the request.
    Reset = 3,
    InvalidResponse = 4,
    /// The TLS handshake with an `https://` member failed (its certificate, or no common
    /// parameters).
    Tls = 5,
}

pub const FAILURE_NAMES: [&str; 6] = [
    "connect_refused",
    "connect_timeout",
    "response_timeout",
    "reset",
    "invalid_response",
    "tls",
];

/// One member's cumulative counters on one core.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberCounters {
    /// Times the balancer picked this member.
    pub selected: u64,
    /// Requests now being served by this member (a gauge, read from the balancer at publication).
    pub in_flight: u64,
    /// Responses sent to clients for this member, by status class 1xx..5xx.
    pub responses: [u64; 5],
    pub failures: [u64; FAILURE_NAMES.len()],
    /// Requests sent again on a fresh connection after a reused one died.
    pub retries: u64,
    /// Requests moved from this member to another after it failed.
    pub failovers: u64,
    pub pool_hits: u64,
    pub pool_misses: u64,
    /// Bytes written to the member (request heads and bodies).
    pub bytes_sent: u64,
    /// Bytes read from the member (response heads and bodies).
    pub bytes_received: u64,
    /// Sum of recorded latencies per phase, µs (for Prometheus `_sum`).
    pub latency_sum_us: [u64; 3],
    /// Times a core marked the member failed (connect failure, `failontimeout`, `failonstatus`).
    pub marked_failed: u64,
    /// Cores on which the member is now in its failure window (set at publication).
    pub failed_cores: u64,
}

/// One member's statistics on one core.
pub struct MemberStats {
    pub counters: MemberCounters,
    /// An AJP 403 was already explained in the log on this core (secret mismatch hint).
    pub warned_403: bool,
    /// Latencies recorded since the last publication.
    pub hist: [Histogram<u32>; 3],
}

impl MemberStats {
    fn new() -> MemberStats {
        MemberStats {
            counters: MemberCounters::default(),
            warned_403: false,
            hist: [new_histogram(), new_histogram(), new_histogram()],
        }
    }

    pub fn record(&mut self, phase: Phase, d: Duration) {
        let us = (d.as_micros() as u64).max(1);
        self.hist[phase as usize].saturating_record(us);
        self.counters.latency_sum_us[phase as usize] += us;
    }
}

/// Process-wide counters of one core (not tied to a member).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoreCounters {
    pub connections_total: u64,
    pub connections_active: u64,
    /// Of the active ones, those parked (idle past `park::PARK_AFTER`).
    pub connections_parked: u64,
    /// Requests ringlb refused itself: 400, 405, 408, 414, 431.
    pub refused: [u64; 5],
    /// Requests no route matched (404).
    pub not_found: u64,
    /// Per balancer place (`layout`): requests answered 503 because no member was usable.
    pub unavailable: Vec<u64>,
    /// TLS handshakes completed: `[full, resumed]`.
    pub tls_handshakes: [u64; 2],
    /// TLS handshakes failed, by `tls::session::HandshakeFail` (in `HandshakeFail::ALL` order).
    pub tls_failed: [u64; crate::tls::session::HandshakeFail::ALL.len()],
    /// Requests answered with a redirect to https (`redirect_https`).
    pub redirected: u64,
    /// Response body bytes moved by `splice` (not through user space).
    pub spliced_bytes: u64,
    /// Request body bytes moved by `splice` (not through user space).
    pub spliced_request_bytes: u64,
    /// Tunnels (after a 101) open now, and opened since start.
    pub tunnels_open: u64,
    pub tunnels_total: u64,
    /// Connections a `proxy_protocol` listener closed, by `proxy_protocol::Rejected`: from outside its
    /// `trusted_proxies`, without a header, with an invalid one, without a whole one in time.
    pub proxy_rejected: [u64; crate::proxy_protocol::Rejected::NAMES.len()],
    /// How late this core's 100 ms tick ran (`record_loop_lag`): counts by `LAG_BOUNDS_US`
    /// bucket (not cumulative; the last past every bound), and their sum in µs.
    pub loop_lag: [u64; LAG_BOUNDS_US.len() + 1],
    pub loop_lag_sum_us: u64,
}

/// Upper bounds (µs) of the loop-lag buckets: 1 ms to 2.5 s.
pub const LAG_BOUNDS_US: [u64; 6] = [1_000, 5_000, 25_000, 100_000, 500_000, 2_500_000];

impl CoreCounters {
    /// Counts one tick of the core that ran `late` past the moment it was due: what the event
    /// loop spent on other work, or descheduled, before it got to the tick.
    pub fn record_loop_lag(&mut self, late: Duration) {
        let us = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
        let bucket = LAG_BOUNDS_US
            .iter()
            .position(|&bound| us <= bound)
            .unwrap_or(LAG_BOUNDS_US.len());
        self.loop_lag[bucket] += 1;
        self.loop_lag_sum_us = self.loop_lag_sum_us.saturating_add(us);
    }
}

pub const REFUSED_STATUSES: [u16; 5] = [400, 405, 408, 414, 431];

/// All of one core's statistics.
pub struct CoreStats {
    pub core: CoreCounters,
    /// By member place (`layout`): a member a reload keeps keeps its statistics.
    pub members: Vec<MemberStats>,
}

impl CoreStats {
    /// Statistics for `members` member places and `balancers` balancer places.
    pub fn new(members: usize, balancers: usize) -> CoreStats {
        let mut s = CoreStats {
            core: CoreCounters::default(),
            members: Vec::new(),
        };
        s.grow(members, balancers);
        s
    }

    /// Room for places a new generation gave out (adopting it; never on the request path).
    pub fn grow(&mut self, members: usize, balancers: usize) {
        while self.members.len() < members {
            self.members.push(MemberStats::new());
        }
        if self.core.unavailable.len() < balancers {
            self.core.unavailable.resize(balancers, 0);
        }
    }

    /// The member at `place`.
    pub fn member(&mut self, place: usize) -> &mut MemberStats {
        &mut self.members[place]
    }

    /// Counts a request ringlb refused with `status`.
    pub fn refused(&mut self, status: u16) {
        if let Some(i) = REFUSED_STATUSES.iter().position(|&s| s == status) {
            self.core.refused[i] += 1;
        }
    }
}

/// Index of a status class (1xx → 0 … 5xx → 4).
pub fn status_class(status: u16) -> usize {
    (usize::from(status / 100)).clamp(1, 5) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_without_growing() {
        let mut m = MemberStats::new();
        let before = m.hist[0].distinct_values();
        for us in [1u64, 50, 1_000, 50_000, 10_000_000, u64::MAX / 2] {
            m.record(Phase::Total, Duration::from_micros(us.min(u64::MAX / 4)));
        }
        assert_eq!(m.hist[0].len(), 6);
        assert_eq!(m.hist[0].distinct_values(), before);
        assert_eq!(m.hist[0].max(), m.hist[0].highest_equivalent(HIST_MAX_US));
    }

    #[test]
    fn loop_lag_goes_to_the_first_bucket_whose_bound_it_does_not_pass() {
        let mut c = CoreCounters::default();
        for ms in [0, 1, 2, 5, 99, 100, 101, 2_500, 2_501] {
            c.record_loop_lag(Duration::from_millis(ms));
        }
        c.record_loop_lag(Duration::MAX);
        // <= 1 ms: 0, 1; <= 5: 2, 5; <= 100: 99, 100; <= 500: 101; <= 2.5 s: 2,500; past: 2
        assert_eq!(c.loop_lag, [2, 2, 0, 2, 1, 1, 2]);
        assert_eq!(c.loop_lag_sum_us, u64::MAX, "the sum saturates");
        let mut c = CoreCounters::default();
        c.record_loop_lag(Duration::from_micros(1_500));
        c.record_loop_lag(Duration::from_micros(250));
        assert_eq!(c.loop_lag_sum_us, 1_750);
    }

    #[test]
    fn classes() {
        assert_eq!(status_class(200), 1);
        assert_eq!(status_class(503), 4);
        assert_eq!(status_class(103), 0);
        assert_eq!(status_class(999), 4);
    }
}
