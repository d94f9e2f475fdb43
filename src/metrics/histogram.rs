//! Fixed-bucket latency histograms: log-spaced buckets from 10 µs to 100 s, about 25 %
//! apart, so a percentile read from them is within about 12 % of the true value.
//!
//! Observations go into per-worker atomic buckets (see [`super::pool`]); readers add the
//! shards up into a plain [`Counts`].

/// Upper bounds of the buckets, in microseconds; one more bucket holds what is above.
/// Ten steps per decade (1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8), from 10 µs to 100 s.
pub const BOUNDS_US: [u64; 71] = {
    const STEPS: [u64; 10] = [100, 125, 150, 200, 250, 300, 400, 500, 600, 800];
    let mut out = [0u64; 71];
    let mut decade = 0;
    let mut scale = 10u64; // STEPS are hundredths: 100 * 10 / 100 = 10 µs
    while decade < 7 {
        let mut i = 0;
        while i < 10 {
            out[decade * 10 + i] = STEPS[i] * scale / 100;
            i += 1;
        }
        scale *= 10;
        decade += 1;
    }
    out[70] = 100_000_000;
    out
};

/// Buckets, the last one being everything above 100 s.
pub const BUCKETS: usize = BOUNDS_US.len() + 1;

/// For each power of two 2^k, the first bucket whose bound is at least 2^k.
const OCTAVE_START: [u8; 64] = {
    let mut out = [0u8; 64];
    let mut k = 0;
    while k < 64 {
        let p = 1u64 << k;
        let mut i = 0;
        while i < BOUNDS_US.len() && BOUNDS_US[i] < p {
            i += 1;
        }
        out[k] = i as u8;
        k += 1;
    }
    out
};

/// The bucket a duration of `us` microseconds falls in: the first whose bound is at least
/// `us`. Starts from the bucket of `us`'s power of two and steps over at most the four
/// bounds within one octave (a binary search over all 71 cost twice as much).
#[inline]
pub fn bucket(us: u64) -> usize {
    if us <= BOUNDS_US[0] {
        return 0;
    }
    let k = 63 - us.leading_zeros() as usize;
    let mut i = OCTAVE_START[k] as usize;
    while i < BOUNDS_US.len() && BOUNDS_US[i] < us {
        i += 1;
    }
    i
}

/// Bucket bounds (in seconds) exported to Prometheus: the 1, 2.5, 5 steps from 100 µs to
/// 100 s. Each is one of [`BOUNDS_US`], so cumulative counts are exact.
pub const PROMETHEUS_LE_US: [u64; 19] = [
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
];

/// Plain bucket counts and the sum of the observations, for reading and arithmetic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counts {
    pub buckets: [u64; BUCKETS],
    pub sum_us: u64,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            buckets: [0; BUCKETS],
            sum_us: 0,
        }
    }
}

impl Counts {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    pub fn add(&mut self, other: &Counts) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
        self.sum_us += other.sum_us;
    }

    /// What happened between `older` and `self` (counts only grow; saturates if not).
    pub fn since(&self, older: &Counts) -> Counts {
        let mut out = Counts::default();
        for (i, o) in out.buckets.iter_mut().enumerate() {
            *o = self.buckets[i].saturating_sub(older.buckets[i]);
        }
        out.sum_us = self.sum_us.saturating_sub(older.sum_us);
        out
    }

    /// Observations at or below `le_us` (which should be one of [`BOUNDS_US`]).
    pub fn cumulative(&self, le_us: u64) -> u64 {
        let last = bucket(le_us);
        self.buckets[..=last.min(BUCKETS - 1)].iter().sum()
    }

    /// The `q` quantile (0..1) in microseconds, interpolated linearly inside its bucket;
    /// `None` without observations. Values past the last bound read as 100 s.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
        let mut below = 0u64;
        for (i, &c) in self.buckets.iter().enumerate() {
            if c > 0 && below + c >= rank {
                let lower = if i == 0 { 0 } else { BOUNDS_US[i - 1] };
                let Some(&upper) = BOUNDS_US.get(i) else {
                    return Some(lower);
                };
                let frac = (rank - below) as f64 / c as f64;
                return Some(lower + ((upper - lower) as f64 * frac).round() as u64);
            }
            below += c;
        }
        BOUNDS_US.last().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_ascend_and_cover_10us_to_100s() {
        assert!(BOUNDS_US.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(BOUNDS_US[0], 10);
        assert_eq!(BOUNDS_US[10], 100);
        assert_eq!(BOUNDS_US[70], 100_000_000);
        for le in PROMETHEUS_LE_US {
            assert!(BOUNDS_US.contains(&le), "{le}");
        }
    }

    #[test]
    fn bucket_matches_a_binary_search() {
        let mut us = 0u64;
        while us < 200_000_000 {
            assert_eq!(bucket(us), BOUNDS_US.partition_point(|&b| b < us), "{us}");
            us = us * 21 / 20 + 1;
        }
        for b in BOUNDS_US {
            for v in [b - 1, b, b + 1] {
                assert_eq!(bucket(v), BOUNDS_US.partition_point(|&x| x < v), "{v}");
            }
        }
    }

    #[test]
    fn bucket_edges() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(10), 0);
        assert_eq!(bucket(11), 1);
        assert_eq!(bucket(100_000_000), 70);
        assert_eq!(bucket(u64::MAX), 71);
    }

    #[test]
    fn quantiles_are_close() {
        let mut c = Counts::default();
        for us in 1..=1000u64 {
            c.buckets[bucket(us * 100)] += 1; // 100 µs .. 100 ms, uniform
        }
        let p50 = c.quantile_us(0.5).unwrap() as f64;
        let p99 = c.quantile_us(0.99).unwrap() as f64;
        assert!((p50 / 50_000.0 - 1.0).abs() < 0.13, "{p50}");
        assert!((p99 / 99_000.0 - 1.0).abs() < 0.13, "{p99}");
        assert_eq!(Counts::default().quantile_us(0.5), None);
        assert_eq!(c.cumulative(100_000), 1000);
        assert_eq!(c.cumulative(1_000), 10);
    }
}
