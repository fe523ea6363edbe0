//! Replays every seed and every input a fuzzer ever found (`fuzz/seeds/<target>/`,
//! `fuzz/regressions/<target>/`) through the same entry points the fuzz targets use, so
//! that whatever once crashed is checked on every test run.

use std::path::Path;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut out = Vec::new();
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_file() {
                out.push((
                    path.display().to_string(),
                    std::fs::read(&path).expect("readable input"),
                ));
            }
        }
    }
    out
}

#[test]
fn every_seed_and_regression_input_replays_cleanly() {
    let mut total = 0;
    for (target, run) in pacc_proto::fuzz::TARGETS {
        let inputs = inputs(target);
        assert!(!inputs.is_empty(), "target {target} has no seed corpus");
        for (name, bytes) in inputs {
            let r = std::panic::catch_unwind(|| run(&bytes));
            assert!(r.is_ok(), "{target}: {name} panicked");
            total += 1;
        }
    }
    assert!(total >= pacc_proto::fuzz::TARGETS.len());
}
