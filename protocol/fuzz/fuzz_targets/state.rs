//! Arbitrary bytes as a sequence of envelopes (length-prefixed records, optionally re-signed
//! and relinked to earlier ones) fed to a `State` at varying times, one by one and in
//! batches; every ledger is computed, and the outcome must not depend on the arrival order.
//! See `passalong_protocol_fuzz::state`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| passalong_protocol_fuzz::state(data));
