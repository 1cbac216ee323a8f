//! Arbitrary bytes as an envelope: `Attestation::decode`, `validation::check` and
//! `check_batch` never panic and agree, anything accepted re-encodes to exactly its bytes
//! (id = blake3 of them), and a decodable body re-signed by its author passes exactly when
//! its limits hold. See `passalong_protocol_fuzz::decode`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| passalong_protocol_fuzz::decode(data));
