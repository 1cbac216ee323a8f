//! The key file's test vector (`tests/vectors/keyfile-v1.json`), for another implementation to
//! check against: the inputs, and the file they seal to with the salt and nonce given.

use passalong_accounts::vault::{self, KeyFile};
use passalong_accounts::KdfParams;
use passalong_protocol::Keypair;
use serde::Deserialize;

#[derive(Deserialize)]
struct Vector {
    /// How the file is built, for a reader of the vector.
    #[allow(dead_code)]
    about: String,
    seed: String,
    password: String,
    extra: String,
    m_kib: u32,
    t: u32,
    p: u32,
    salt: String,
    nonce: String,
    file: KeyFile,
}

fn bytes<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).expect("hex");
    out
}

#[test]
fn the_key_file_vector_seals_and_opens() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/keyfile-v1.json"),
    )
    .expect("the vector file");
    let v: Vector = serde_json::from_str(&text).expect("the vector parses");
    let keypair = Keypair::from_seed(bytes(&v.seed));
    let extra = hex::decode(&v.extra).expect("hex");
    let params = KdfParams {
        m_kib: v.m_kib,
        t: v.t,
        p: v.p,
    };
    let sealed = vault::seal_with(
        &keypair,
        &extra,
        v.password.as_bytes(),
        params,
        bytes(&v.salt),
        bytes(&v.nonce),
    )
    .expect("seal");
    assert_eq!(sealed, v.file, "sealing the inputs gives the vector's file");
    let opened = vault::open(&v.file, v.password.as_bytes()).expect("open");
    assert_eq!(opened.keypair.seed(), keypair.seed());
    assert_eq!(opened.extra.as_slice(), extra.as_slice());
}
