//! Replays the `serve_request` seeds and regressions through `pacc serve`'s request path.

use std::path::Path;

#[test]
fn serve_request_inputs_replay_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut n = 0;
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join("serve_request")) else {
            continue;
        };
        for e in entries.flatten() {
            let bytes = std::fs::read(e.path()).unwrap();
            pacc::serve::fuzz_request(&bytes);
            n += 1;
        }
    }
    assert!(n >= 3, "the seed corpus is there");
}
