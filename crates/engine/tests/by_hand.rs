//! The engine binary is started by `jarvisctl run` only, which passes the
//! single-instance lock it holds. Run any other way, it must refuse before
//! it supervises anything: a second engine would run the bot twice.
//! (Its supervision is tested as root in the jarvis-supervisor package's
//! tests/run_engine.rs, through `jarvisctl run`.)

use std::process::{Command, Output};

const ENGINE: &str = env!("CARGO_BIN_EXE_jarvis-engine");

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn by_hand_without_a_lock_it_refuses_and_says_how_to_start_it() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&[][..], &["--lock-fd", "2", "--jarvisctl", "/bin/true"][..]] {
        let out = Command::new(ENGINE)
            .args(args)
            .arg("--root")
            .arg(dir.path())
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("jarvis-engine is started by `jarvisctl run`"),
            "{args:?}: {err}"
        );
        assert!(err.contains("note: run: jarvisctl run"), "{args:?}: {err}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "it wrote nothing"
    );
}

#[test]
fn a_descriptor_that_is_not_its_lock_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Descriptor 9 is an ordinary file, not run.lock of this state directory.
    let out = Command::new("/bin/sh")
        .args([
            "-c",
            r#"exec "$0" --lock-fd 9 --jarvisctl /bin/true --root "$1" 9>"$1/other""#,
        ])
        .arg(ENGINE)
        .arg(dir.path())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("descriptor 9 is not the lock"), "{err}");
    assert!(err.contains("run/jarvis-supervisor-run/run.lock"), "{err}");
    assert!(
        err.contains("note: start the engine with: jarvisctl run"),
        "{err}"
    );
    assert!(
        !dir.path().join("run/jarvis-supervisor-run/run.pid").exists(),
        "no pid file"
    );
}
