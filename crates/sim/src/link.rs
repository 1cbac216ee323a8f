//! The simulated network between nodes: latency per link, loss, a partition.

use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;

/// Links between nodes.
#[derive(Debug)]
pub struct Links {
    latency: (u64, u64),
    loss: f64,
    partition: Option<(u64, u64)>,
}

impl Links {
    /// Links with one-way latency in `latency` (ms), loss probability `loss`, and the
    /// network split in halves (even and odd node numbers) during `partition`.
    pub fn new(latency: (u64, u64), loss: f64, partition: Option<(u64, u64)>) -> Links {
        Links {
            latency,
            loss,
            partition,
        }
    }

    /// A link's fixed latency: the same both ways and for the whole run.
    pub fn latency(&self, a: u32, b: u32) -> u64 {
        let (lo, hi) = self.latency;
        let (x, y) = (a.min(b) as u64, a.max(b) as u64);
        let h = x
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(17)
            .wrapping_add(y.wrapping_mul(0xC2B2_AE3D_27D4_EB4F));
        lo + (h >> 11) % (hi - lo + 1)
    }

    /// Whether `a` and `b` can talk at `now`.
    pub fn connected(&self, a: u32, b: u32, now: u64) -> bool {
        match self.partition {
            Some((from, to)) if (from..to).contains(&now) => a % 2 == b % 2,
            _ => true,
        }
    }

    /// When a message sent at `now` from `a` arrives at `b`, or `None` if it is lost.
    pub fn deliver(&self, a: u32, b: u32, now: u64, rng: &mut ChaCha8Rng) -> Option<u64> {
        if !self.connected(a, b, now) {
            return None;
        }
        let roll = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        (roll >= self.loss).then(|| now + self.latency(a, b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    #[test]
    fn latency_is_symmetric_and_in_range_and_partitions_cut() {
        let l = Links::new((5, 80), 0.0, Some((10, 20)));
        for a in 0..50 {
            for b in 0..50 {
                assert_eq!(l.latency(a, b), l.latency(b, a));
                assert!((5..=80).contains(&l.latency(a, b)));
            }
        }
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert!(l.deliver(1, 2, 15, &mut rng).is_none());
        assert!(l.deliver(1, 3, 15, &mut rng).is_some());
        assert!(l.deliver(1, 2, 25, &mut rng).is_some());
    }
}
