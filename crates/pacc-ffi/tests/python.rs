//! The Python binding, tested from Python: pytest (bindings/python/test_ffi.py) imports the
//! generated module with this build of the library and drives discover → probe → setup
//! against real peers (Dovecot behind a verified configuration), a tampered provider (a
//! typed `PaccError.Integrity`) and a stalled one (cancellation).
#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::Command;

use pacc_testbed::embedding::Provider;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The library cargo built for this test run (target/debug/libpacc_ffi.so or its deps/).
fn library() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let name = format!(
        "{}pacc_ffi{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    [deps.join(&name), deps.parent().unwrap().join(&name)]
        .into_iter()
        .filter(|p| p.exists())
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .unwrap_or_else(|| panic!("{name} was not built next to {}", exe.display()))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_binding_sets_up_an_account() {
    if !pacc_testbed::peers::python_with(&["pytest"]) {
        return;
    }
    let Some(p) = Provider::start().await.unwrap() else {
        return;
    };

    // The committed module and this build's library, side by side.
    let module = tempfile::tempdir().unwrap();
    let lib = library();
    std::fs::copy(&lib, module.path().join(lib.file_name().unwrap())).unwrap();
    for file in ["pacc_ffi.py", "test_ffi.py"] {
        std::fs::copy(
            root().join("bindings/python").join(file),
            module.path().join(file),
        )
        .unwrap();
    }
    let data = tempfile::tempdir().unwrap();
    let out = Command::new("python3")
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "test_ffi.py",
        ])
        .current_dir(module.path())
        .envs(p.env())
        .env("PACC_DATA_DIR", data.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "pytest failed:\n{text}");
    assert!(
        p.logged_in("managesieve"),
        "the binding's sign-in reached Dovecot:\n{}",
        p.log()
    );
}
