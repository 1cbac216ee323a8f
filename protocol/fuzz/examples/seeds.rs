//! Writes the seed corpus, `corpus/<target>/seed-*`: real valid envelopes of all nine kinds
//! for `decode`, and record sequences of them for `state`. Run from `protocol/fuzz` with
//! `cargo run --example seeds`; the files are deterministic (fixed-seed keys).

use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, name, bytes) in passalong_protocol_fuzz::seed_files() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(&name), bytes)?;
        println!("corpus/{target}/{name}");
    }
    Ok(())
}
