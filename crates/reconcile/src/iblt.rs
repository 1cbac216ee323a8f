//! Rateless invertible Bloom lookup table (Yang, Gilad, Alizadeh, SIGCOMM 2024).
//!
//! Coded symbol `j` holds the XOR of the ids, the XOR of their 64-bit checksums and the
//! count (mod 256) of the items mapped to it. Item `x` always maps to symbol 0 and then to
//! a deterministic pseudo-random sequence of indices whose density at index `j` is about
//! `1 / (1 + j/2)` (the paper's mapping, same recurrence as its reference implementation),
//! so any prefix of the infinite symbol stream is a valid IBLT and the sender can keep
//! streaming symbols until the receiver peels.

use crate::Id;

const SEED_SUM: u64 = 0x6a09_e667_f3bc_c908;
const SEED_MAP: u64 = 0xbb67_ae85_84ca_a73b;
/// Seed of the hash used for difference-estimation samples.
pub(crate) const SEED_SAMPLE: u64 = 0x3c6e_f372_fe94_f82b;

/// Bytes of one coded symbol on the wire: 32 (id XOR) + 8 (checksum XOR) + 1 (count mod 256).
pub(crate) const SYMBOL_BYTES: usize = 41;

pub(crate) fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The id as four little-endian 64-bit limbs.
pub(crate) fn limbs(id: &Id) -> [u64; 4] {
    let mut l = [0u64; 4];
    for (i, limb) in l.iter_mut().enumerate() {
        let mut b = [0u8; 8];
        b.copy_from_slice(&id[i * 8..i * 8 + 8]);
        *limb = u64::from_le_bytes(b);
    }
    l
}

/// Inverse of [`limbs`].
pub(crate) fn from_limbs(l: &[u64; 4]) -> Id {
    let mut id = [0u8; 32];
    for (i, limb) in l.iter().enumerate() {
        id[i * 8..i * 8 + 8].copy_from_slice(&limb.to_le_bytes());
    }
    id
}

/// Seeded 64-bit hash of an id (ids are assumed to be cryptographic digests already).
pub(crate) fn hash_limbs(l: &[u64; 4], seed: u64) -> u64 {
    let mut h = seed;
    for x in l {
        h = mix64(h ^ x);
    }
    h
}

/// One coded symbol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Symbol {
    pub sum: [u64; 4],
    pub hash: u64,
    pub count: u8,
}

impl Symbol {
    fn apply(&mut self, l: &[u64; 4], h: u64, delta: u8) {
        for (s, x) in self.sum.iter_mut().zip(l) {
            *s ^= x;
        }
        self.hash ^= h;
        self.count = self.count.wrapping_add(delta);
    }

    fn is_zero(&self) -> bool {
        self.count == 0 && self.hash == 0 && self.sum == [0; 4]
    }

    fn is_pure(&self) -> bool {
        (self.count == 1 || self.count == 255) && hash_limbs(&self.sum, SEED_SUM) == self.hash
    }

    /// `self - other`, the symbol of the symmetric difference.
    #[cfg(test)]
    pub fn sub(&self, other: &Symbol) -> Symbol {
        let mut s = *self;
        s.apply(&other.sum, other.hash, other.count.wrapping_neg());
        s
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        for x in &self.sum {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.extend_from_slice(&self.hash.to_le_bytes());
        out.push(self.count);
    }

    /// Parses exactly [`SYMBOL_BYTES`] bytes.
    pub fn read(b: &[u8; SYMBOL_BYTES]) -> Symbol {
        let mut id = [0u8; 32];
        id.copy_from_slice(&b[..32]);
        let mut h = [0u8; 8];
        h.copy_from_slice(&b[32..40]);
        Symbol {
            sum: limbs(&id),
            hash: u64::from_le_bytes(h),
            count: b[40],
        }
    }
}

/// Multiplier of the mapping's generator (the paper's reference implementation).
const MAP_MUL: u64 = 0xda94_2042_e4dd_58b5;

const TWO_51: f64 = 2_251_799_813_685_248.0;
const TWO_52: f64 = 4_503_599_627_370_496.0;

/// The paper's index generator: next index `j' = j + ceil((j + 1.5) * (2^32 / sqrt(r + 1) - 1))`.
#[derive(Clone, Copy)]
struct Mapping {
    prng: u64,
    last: u64,
}

impl Mapping {
    fn new(l: &[u64; 4]) -> Self {
        Mapping {
            prng: hash_limbs(l, SEED_MAP) | 1,
            last: 0,
        }
    }

    fn next_index(&mut self) -> u64 {
        let next = step(&mut self.prng, self.last);
        if next == IDLE {
            return self.next_index_wide();
        }
        self.last = next;
        next
    }

    /// [`Mapping::next_index`] for indices of 2^51 or gaps of 2^51 and more (never reached
    /// with real symbol counts, but part of the definition), once [`step`] advanced the
    /// generator.
    #[cold]
    fn next_index_wide(&mut self) -> u64 {
        let x = (self.last as f64 + 1.5) * scale(self.prng);
        let t = x as u64;
        let gap = t.saturating_add(u64::from((t as f64) < x)).max(1);
        self.last = self.last.saturating_add(gap);
        self.last
    }
}

/// The factor of the recurrence for the generator's output `r`: `2^32 / sqrt(r + 1) - 1`.
#[inline(always)]
fn scale(r: u64) -> f64 {
    4_294_967_296.0 / ((r as f64) + 1.0).sqrt() - 1.0
}

/// One step of the recurrence: advances the generator `p` and returns the index after `j`,
/// or [`IDLE`] when `j` or the gap is 2^51 or more (then [`Mapping::next_index_wide`] has
/// the exact index). Branch-free, so that [`step_lanes`] compiles to vector operations.
#[inline(always)]
fn step(p: &mut u64, j: u64) -> u64 {
    let r = p.wrapping_mul(MAP_MUL);
    *p = r;
    // Signed conversions are single instructions on x86-64, unsigned ones are not: below
    // 2^52 both sides of the conversion agree exactly.
    let x = ((j as i64) as f64 + 1.5) * scale(r);
    // `x.ceil()` without the library call (the baseline x86-64 target has no rounding
    // instruction) nor a checked float-to-int conversion: adding 2^52 leaves `x` rounded to
    // an integer in the mantissa (`0 <= x < 2^51`). A zero gap would cancel the item out of
    // a symbol, so force >= 1.
    let y = x + TWO_52;
    let near = y.to_bits().wrapping_sub(TWO_52.to_bits());
    let gap = near + u64::from(y - TWO_52 < x);
    if j < LANE_END_MAX && x < TWO_51 {
        j + gap.max(1)
    } else {
        IDLE
    }
}

/// Items encoded side by side: the index recurrence of one item is a chain of dependent
/// divisions and square roots, so interleaving independent items keeps the CPU busy; with
/// AVX-512 each step of sixteen lanes is two 8-wide vector operations.
const LANES: usize = 16;

/// Indices below this bound are produced exactly by [`step`]; `add` only needs the indices
/// below its end (at most `MAX_SYMBOLS`, far below).
const LANE_END_MAX: u64 = 1 << 51;

/// A lane with nothing left to encode.
const IDLE: u64 = u64::MAX;

/// The items being encoded, one per lane, as arrays so that [`step_lanes`] vectorizes.
struct Lanes {
    l: [[u64; 4]; LANES],
    h: [u64; LANES],
    prng: [u64; LANES],
    /// The lane's current index, or [`IDLE`].
    j: [u64; LANES],
}

/// Items read ahead of the lanes, [`LANES`] at a time, with their checksums and mapping
/// seeds computed side by side (limb-major, so that the hashing vectorizes too).
struct Intake {
    l: [[u64; LANES]; 4],
    h: [u64; LANES],
    seed: [u64; LANES],
    len: usize,
    next: usize,
}

impl Intake {
    const EMPTY: Intake = Intake {
        l: [[0; LANES]; 4],
        h: [0; LANES],
        seed: [0; LANES],
        len: 0,
        next: 0,
    };

    /// Moves the next item into lane `k`; `false` when there is none.
    #[inline(always)]
    fn load<'a>(
        &mut self,
        ids: &mut impl Iterator<Item = &'a Id>,
        lanes: &mut Lanes,
        k: usize,
    ) -> bool {
        if self.next == self.len {
            self.fill(ids);
            if self.len == 0 {
                return false;
            }
        }
        let i = self.next;
        self.next += 1;
        lanes.l[k] = [self.l[0][i], self.l[1][i], self.l[2][i], self.l[3][i]];
        lanes.h[k] = self.h[i];
        lanes.prng[k] = self.seed[i];
        lanes.j[k] = 0;
        true
    }

    #[inline(always)]
    fn fill<'a>(&mut self, ids: &mut impl Iterator<Item = &'a Id>) {
        let mut len = 0;
        for id in ids.take(LANES) {
            for (limb, x) in self.l.iter_mut().zip(limbs(id)) {
                limb[len] = x;
            }
            len += 1;
        }
        // `hash_limbs` of each item with both seeds, lane by lane.
        let (mut h, mut m) = ([SEED_SUM; LANES], [SEED_MAP; LANES]);
        for limb in &self.l {
            for k in 0..LANES {
                h[k] = mix64(h[k] ^ limb[k]);
                m[k] = mix64(m[k] ^ limb[k]);
            }
        }
        self.h = h;
        for (s, m) in self.seed.iter_mut().zip(m) {
            *s = m | 1;
        }
        self.len = len;
        self.next = 0;
    }
}

/// Advances every lane to its next index ([`step`]; an idle lane stays idle). With AVX-512
/// the unsigned conversions, square roots and divisions of eight lanes are one instruction
/// each, with the same IEEE results as the scalar ones.
#[inline(always)]
fn step_lanes(prng: &mut [u64; LANES], j: &mut [u64; LANES]) {
    for (p, j) in prng.iter_mut().zip(j.iter_mut()) {
        *j = step(p, *j);
    }
}

/// Coded symbols `start..end` of `ids` (memory is proportional to `end - start`).
pub(crate) fn encode<'a>(
    ids: impl Iterator<Item = &'a Id>,
    start: usize,
    end: usize,
) -> Vec<Symbol> {
    let mut out = vec![Symbol::default(); end.saturating_sub(start)];
    add(&mut out, ids, start as u64, 1);
    out
}

/// Adds (`delta` 1) or subtracts (`delta` 255) the coded symbols `start..start + out.len()`
/// of `ids` to `out`.
pub(crate) fn add<'a>(
    out: &mut [Symbol],
    ids: impl Iterator<Item = &'a Id>,
    start: u64,
    delta: u8,
) {
    if out.is_empty() {
        return;
    }
    let end = start.saturating_add(out.len() as u64);
    if end > LANE_END_MAX {
        add_one_by_one(out, ids, start, end, delta);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(build) = vector() {
        build.add(out, ids, start, end, delta);
        return;
    }
    add_lanes(out, ids, start, end, delta);
}

/// The widest vector build of the encoder this CPU runs (checked once).
#[cfg(target_arch = "x86_64")]
fn vector() -> Option<simd::Vector> {
    static WIDEST: std::sync::OnceLock<Option<simd::Vector>> = std::sync::OnceLock::new();
    *WIDEST.get_or_init(|| simd::Vector::available().first().copied())
}

/// Builds of [`add_lanes`] for the vector extensions of x86-64 CPUs: AVX-512 (eight lanes
/// per instruction, unsigned conversions and 64-bit multiplications in one instruction
/// each) and AVX2 (four lanes). The source is the same; the instructions give the same
/// IEEE results as the portable build's (no fused multiply-adds: Rust does not contract).
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod simd {
    #[cfg(test)]
    use super::LANES;
    use super::{Id, Symbol};

    /// A module of the encoder's functions compiled with `$features`.
    macro_rules! build {
        ($name:ident, $features:literal) => {
            mod $name {
                use super::super::{add_lanes, Id, Symbol};
                #[cfg(test)]
                use super::super::{step_lanes, LANES};

                #[target_feature(enable = $features)]
                pub(super) fn add<'a>(
                    out: &mut [Symbol],
                    ids: impl Iterator<Item = &'a Id>,
                    start: u64,
                    end: u64,
                    delta: u8,
                ) {
                    add_lanes(out, ids, start, end, delta);
                }

                #[cfg(test)]
                #[target_feature(enable = $features)]
                pub(super) fn step(prng: &mut [u64; LANES], j: &mut [u64; LANES]) {
                    step_lanes(prng, j);
                }
            }
        };
    }
    build!(avx512, "avx512f,avx512dq");
    build!(avx2, "avx2");

    /// A vector build, once the CPU is known to run it.
    #[derive(Clone, Copy, Debug)]
    pub(super) enum Vector {
        Avx512,
        Avx2,
    }

    impl Vector {
        /// The builds this CPU runs, widest first.
        pub(super) fn available() -> Vec<Vector> {
            let mut builds = Vec::new();
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512dq")
            {
                builds.push(Vector::Avx512);
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                builds.push(Vector::Avx2);
            }
            builds
        }

        pub(super) fn add<'a>(
            self,
            out: &mut [Symbol],
            ids: impl Iterator<Item = &'a Id>,
            start: u64,
            end: u64,
            delta: u8,
        ) {
            // SAFETY: a `Vector` is only made by `available`, after the CPU check of its
            // features, the only requirement of a `target_feature` function.
            unsafe {
                match self {
                    Vector::Avx512 => avx512::add(out, ids, start, end, delta),
                    Vector::Avx2 => avx2::add(out, ids, start, end, delta),
                }
            }
        }

        #[cfg(test)]
        pub(super) fn step(self, prng: &mut [u64; LANES], j: &mut [u64; LANES]) {
            // SAFETY: as in `add`.
            unsafe {
                match self {
                    Vector::Avx512 => avx512::step(prng, j),
                    Vector::Avx2 => avx2::step(prng, j),
                }
            }
        }
    }
}

/// [`add`] for `end <= LANE_END_MAX`, [`LANES`] items at a time.
#[inline(always)]
fn add_lanes<'a>(
    out: &mut [Symbol],
    ids: impl Iterator<Item = &'a Id>,
    start: u64,
    end: u64,
    delta: u8,
) {
    let mut ids = ids.fuse();
    let mut intake = Intake::EMPTY;
    let mut lanes = Lanes {
        l: [[0; 4]; LANES],
        h: [0; LANES],
        prng: [0; LANES],
        j: [IDLE; LANES],
    };
    let mut live = 0;
    for k in 0..LANES {
        if intake.load(&mut ids, &mut lanes, k) {
            live += 1;
        }
    }
    while live > 0 {
        for k in 0..LANES {
            let j = lanes.j[k];
            if let Some(sym) = j.checked_sub(start).and_then(|i| out.get_mut(i as usize)) {
                sym.apply(&lanes.l[k], lanes.h[k], delta);
            }
        }
        let before = lanes.j;
        step_lanes(&mut lanes.prng, &mut lanes.j);
        for (k, was) in before.into_iter().enumerate() {
            if lanes.j[k] >= end && was < end && !intake.load(&mut ids, &mut lanes, k) {
                lanes.j[k] = IDLE;
                live -= 1;
            }
        }
    }
}

/// [`add`] for any end, one item after the other with the exact recurrence.
fn add_one_by_one<'a>(
    out: &mut [Symbol],
    ids: impl Iterator<Item = &'a Id>,
    start: u64,
    end: u64,
    delta: u8,
) {
    for id in ids {
        let l = limbs(id);
        let h = hash_limbs(&l, SEED_SUM);
        let mut map = Mapping::new(&l);
        let mut j = 0;
        while j < end {
            if let Some(sym) = j.checked_sub(start).and_then(|i| out.get_mut(i as usize)) {
                sym.apply(&l, h, delta);
            }
            j = map.next_index();
        }
    }
}

/// Peels a difference stream (`remote - local`). On success returns `(local_only, remote_only)`.
pub(crate) fn peel(diff: &mut [Symbol]) -> Option<(Vec<Id>, Vec<Id>)> {
    let m = diff.len();
    let mut queue: Vec<usize> = (0..m).filter(|&j| diff[j].is_pure()).collect();
    let (mut local, mut remote) = (Vec::new(), Vec::new());
    let max_items = 2 * m + 16;
    while let Some(j) = queue.pop() {
        let s = diff[j];
        if !s.is_pure() {
            continue;
        }
        if local.len() + remote.len() >= max_items {
            return None;
        }
        if s.count == 1 {
            remote.push(from_limbs(&s.sum));
        } else {
            local.push(from_limbs(&s.sum));
        }
        let mut map = Mapping::new(&s.sum);
        let mut k = 0u64;
        while k < m as u64 {
            let sym = &mut diff[k as usize];
            sym.apply(&s.sum, s.hash, s.count.wrapping_neg());
            // Purity (a hash) is checked when the symbol is taken from the queue.
            if sym.count == 1 || sym.count == 255 {
                queue.push(k as usize);
            }
            k = map.next_index();
        }
    }
    if diff.iter().all(Symbol::is_zero) {
        Some((local, remote))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u64) -> Id {
        from_limbs(&[mix64(i), mix64(i + 1_000_000), i, 7])
    }

    #[test]
    fn peels_symmetric_difference() {
        let common: Vec<Id> = (0..500).map(id).collect();
        let a_only: Vec<Id> = (1000..1030).map(id).collect();
        let b_only: Vec<Id> = (2000..2020).map(id).collect();
        let m = 120;
        let a = encode(common.iter().chain(&a_only), 0, m);
        let b = encode(common.iter().chain(&b_only), 0, m);
        let tail = encode(common.iter().chain(&b_only), 50, m);
        assert_eq!(&b[50..], &tail[..]);
        let mut diff: Vec<Symbol> = b.iter().zip(&a).map(|(x, y)| x.sub(y)).collect();
        let (mut local, mut remote) =
            peel(&mut diff).expect("120 symbols suffice for 50 differences");
        local.sort();
        remote.sort();
        let (mut ea, mut eb) = (a_only.clone(), b_only.clone());
        ea.sort();
        eb.sort();
        assert_eq!(local, ea);
        assert_eq!(remote, eb);
    }

    #[test]
    fn density_decreases() {
        let ids: Vec<Id> = (0..20_000).map(id).collect();
        let s = encode(ids.iter(), 0, 64);
        assert_eq!(s[0].count as usize, 20_000 % 256);
        let mut map = Mapping::new(&limbs(&ids[0]));
        let idx: Vec<u64> = (0..5).map(|_| map.next_index()).collect();
        assert!(idx.windows(2).all(|w| w[0] < w[1]));
    }

    /// The index recurrence as the paper writes it, with the library `ceil`.
    fn reference_next(prng: &mut u64, last: &mut u64) -> u64 {
        let r = prng.wrapping_mul(0xda94_2042_e4dd_58b5);
        *prng = r;
        let gap =
            ((*last as f64 + 1.5) * (4_294_967_296.0 / ((r as f64) + 1.0).sqrt() - 1.0)).ceil();
        let gap = if gap >= 1.0 { gap as u64 } else { 1 };
        *last = last.saturating_add(gap);
        *last
    }

    #[test]
    fn mapping_matches_reference() {
        for i in 0..20_000u64 {
            let l = [mix64(i), mix64(!i), i, 3];
            let mut map = Mapping::new(&l);
            let (mut prng, mut last) = (map.prng, 0);
            loop {
                let got = map.next_index();
                assert_eq!(got, reference_next(&mut prng, &mut last), "item {i}");
                if got > 1 << 40 {
                    break;
                }
            }
        }
        // Extremes of the generator: the largest and smallest multiplier outputs, and
        // indices near saturation.
        let inv = 0x8b83_8d03_54ea_d59du64; // multiplicative inverse of the multiplier (mod 2^64)
        assert_eq!(inv.wrapping_mul(0xda94_2042_e4dd_58b5), 1);
        for (r, last) in [
            (u64::MAX, 0),
            (0, 0),
            (1, 5),
            (u64::MAX - 1, 1 << 52),
            (12345, (1 << 53) + 1),
            (0, u64::MAX - 10),
            (7, u64::MAX),
        ] {
            let prng = r.wrapping_mul(inv);
            let mut map = Mapping { prng, last };
            let (mut p, mut l) = (prng, last);
            assert_eq!(
                map.next_index(),
                reference_next(&mut p, &mut l),
                "r {r} last {last}"
            );
        }
    }

    #[test]
    fn interleaved_encoding_matches_one_by_one() {
        let ids: Vec<Id> = (0..1000).map(id).collect();
        let (start, end) = (3u64, 700u64);
        let mut expect = vec![Symbol::default(); (end - start) as usize];
        for x in &ids {
            let l = limbs(x);
            let h = hash_limbs(&l, SEED_SUM);
            let mut map = Mapping::new(&l);
            let mut j = 0;
            while j < end {
                if j >= start {
                    expect[(j - start) as usize].apply(&l, h, 1);
                }
                j = map.next_index();
            }
        }
        assert_eq!(encode(ids.iter(), start as usize, end as usize), expect);
        for n in 0..LANES + 2 {
            let mut out = encode(ids[..n].iter(), 0, 50);
            add(&mut out, ids[..n].iter(), 0, 255);
            assert!(out.iter().all(Symbol::is_zero), "{n} ids");
        }
    }

    /// Every lane's step is the paper's next index, exact below [`LANE_END_MAX`], in the
    /// portable build and each vector build the CPU runs.
    #[test]
    fn lane_steps_follow_the_mapping() {
        let mut states = Vec::new();
        for i in 0..40_000u64 {
            // Indices of every magnitude, up to 2^64.
            states.push((mix64(i) | 1, mix64(!i) >> (i % 64)));
        }
        let inv = 0x8b83_8d03_54ea_d59du64; // inverse of the generator's multiplier
        for r in [0, 1, u64::MAX, u64::MAX - 1, 1 << 63] {
            for last in [0, 1, (1 << 51) - 1, 1 << 51, (1 << 52) - 1, u64::MAX - 1] {
                states.push((r.wrapping_mul(inv), last));
            }
        }
        let mut vector_ran = false;
        for chunk in states.chunks(LANES) {
            let mut prng = [1; LANES];
            let mut j = [0; LANES];
            for (k, &(p, l)) in chunk.iter().enumerate() {
                prng[k] = p;
                j[k] = l;
            }
            let (p0, j0) = (prng, j);
            step_lanes(&mut prng, &mut j);
            let mut results = vec![(prng, j)];
            #[cfg(target_arch = "x86_64")]
            for build in simd::Vector::available() {
                let (mut p, mut k) = (p0, j0);
                build.step(&mut p, &mut k);
                results.push((p, k));
            }
            vector_ran |= results.len() > 1;
            for k in 0..LANES {
                let (mut want_prng, mut last) = (p0[k], j0[k]);
                let want = reference_next(&mut want_prng, &mut last);
                for (got_prng, got) in results.iter().map(|(p, j)| (p[k], j[k])) {
                    assert_eq!(got_prng, want_prng);
                    assert!(
                        got == want || (got == IDLE && want >= LANE_END_MAX),
                        "prng {:#x} last {}: {got} != {want}",
                        p0[k],
                        j0[k]
                    );
                }
            }
        }
        if !vector_ran {
            eprintln!("no vector extension here: only the portable build was checked");
        }
    }

    /// The lanes (portable build), each vector build the CPU runs, the dispatching entry
    /// point and one item after the other produce the same symbols.
    #[test]
    fn every_build_of_the_encoder_agrees() {
        let ids: Vec<Id> = (0..3000).map(id).collect();
        for (start, end) in [(0u64, 1u64), (0, 5000), (37, 900), (1000, 20_000)] {
            let n = (end - start) as usize;
            let mut expect = vec![Symbol::default(); n];
            add_one_by_one(&mut expect, ids.iter(), start, end, 1);
            let mut lanes = vec![Symbol::default(); n];
            add_lanes(&mut lanes, ids.iter(), start, end, 1);
            assert_eq!(lanes, expect, "lanes {start}..{end}");
            let mut dispatched = vec![Symbol::default(); n];
            add(&mut dispatched, ids.iter(), start, 1);
            assert_eq!(dispatched, expect, "add {start}..{end}");
            #[cfg(target_arch = "x86_64")]
            for build in simd::Vector::available() {
                let mut got = vec![Symbol::default(); n];
                build.add(&mut got, ids.iter(), start, end, 1);
                assert_eq!(got, expect, "{build:?} {start}..{end}");
            }
        }
    }

    #[test]
    fn symbol_roundtrip() {
        let s = Symbol {
            sum: [1, 2, 3, 4],
            hash: 99,
            count: 250,
        };
        let mut v = Vec::new();
        s.write(&mut v);
        let arr: [u8; SYMBOL_BYTES] = v.as_slice().try_into().expect("41 bytes");
        assert_eq!(Symbol::read(&arr), s);
    }
}
