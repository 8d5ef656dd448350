//! The `signals` cleanup next to other listeners for the same signal: a
//! tokio `ctrl_c` listener registered after `signals::install()` still
//! receives the SIGINT and the process lives on (the locks are released
//! all the same); one registered before `install()` receives it too. (A
//! process where ours is the only listener is terminated by the signal
//! after the cleanup: `cli/tests/signals.rs`.)
//!
//! Each test runs its scenario in a child: this test binary run again with
//! `SIGNAL_LISTENER_CHILD` set, filtered to the one test. The child prints
//! `ready` once the lock is held and both listeners are registered; the
//! parent then sends SIGINT and expects the child to report and exit 0.
#![cfg(all(feature = "signals", feature = "tokio", target_os = "linux"))]

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const CHILD_ENV: &str = "SIGNAL_LISTENER_CHILD";
/// Prefix of the child's report lines.
const MARK: &str = "[child] ";

#[test]
fn tokio_ctrl_c_registered_after_install_receives_sigint_and_the_process_lives() {
    run("tokio_ctrl_c_registered_after_install_receives_sigint_and_the_process_lives");
}

#[test]
fn tokio_ctrl_c_registered_before_install_receives_sigint_and_the_process_lives() {
    run("tokio_ctrl_c_registered_before_install_receives_sigint_and_the_process_lives");
}

/// Parent side, or the child's scenario when [`CHILD_ENV`] is set.
fn run(test: &str) {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(test, std::path::Path::new(&dir));
        // Exit here, before the harness prints its report: the parent
        // judges by the exit status and our lines.
        std::process::exit(0);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .env("SESSION_LOCK_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        // The harness prints "test <name> ... " without a newline before
        // our first line: keep what follows the marker.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some((_, said)) = line.split_once(MARK)
                && tx.send(said.to_owned()).is_err()
            {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let next = |what: &str, seen: &mut Vec<String>| loop {
        match lines.recv_timeout(WAIT) {
            Ok(line) => {
                seen.push(line.clone());
                if line == what {
                    return;
                }
            }
            Err(e) => panic!("child never printed {what:?} ({e}); it printed {seen:?}"),
        }
    };
    next("ready", &mut seen);
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let status = wait_child(&mut child, WAIT, "signalled child");
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(5)) {
        seen.push(line);
    }
    assert_eq!(
        status.signal(),
        None,
        "the child was killed by the signal though a tokio listener was registered; it printed {seen:?}"
    );
    assert!(
        status.success(),
        "child failed: {status:?}; it printed {seen:?}"
    );
    for expected in ["listener fired", "lock released", "alive"] {
        assert!(
            seen.iter().any(|l| l == expected),
            "child did not print {expected:?}: {seen:?}"
        );
    }
    assert!(
        !lock_of(&dir.path().join("t.jsonl")).exists(),
        "lock file left behind"
    );
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{MARK}{line}").unwrap();
    out.flush().unwrap();
}

fn child(test: &str, dir: &std::path::Path) {
    let before = test.contains("before_install");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        if before {
            register(&mut ctrl_c).await;
        }
        let guard = session_lock::acquire(dir.join("t.jsonl")).unwrap();
        session_lock::signals::install().unwrap();
        if !before {
            register(&mut ctrl_c).await;
        }
        say("ready");
        tokio::time::timeout(WAIT, &mut ctrl_c)
            .await
            .expect("the tokio listener never received SIGINT")
            .unwrap();
        say("listener fired");
        assert_eq!(
            guard.wait_lost(Some(WAIT)),
            Some(session_lock::LostReason::ReleasedAll),
            "the signal cleanup did not release the lock"
        );
        say("lock released");
        // install() returns only once the signal thread has finished with
        // the signal; had it decided to raise the signal again with its
        // default effect, this process would be dead by now.
        session_lock::signals::install().unwrap();
        say("alive");
    });
}

/// Poll `ctrl_c` once: tokio registers its handler on the first poll.
async fn register<F: std::future::Future<Output = std::io::Result<()>> + Unpin>(ctrl_c: &mut F) {
    tokio::select! {
        biased;
        r = ctrl_c => panic!("ctrl_c resolved before any signal: {r:?}"),
        () = std::future::ready(()) => {}
    }
}
