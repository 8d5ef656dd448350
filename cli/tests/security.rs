//! Security properties (see `docs/threat-model.md`): private modes whatever
//! the umask, no symlink followed at the lock path by status or clean,
//! nothing deleted through a symlink, and clean removing only session locks.

#[path = "../../tests/common/mod.rs"]
mod common;

use common::*;
use session_lock::{ErrorKind, LockOptions};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn cli(args: &[&std::ffi::OsStr]) -> Output {
    let mut c = bin();
    c.args(args).stdin(Stdio::null());
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_child(&mut child, WAIT, "session-lock");
    let mut out = child.wait_with_output().unwrap();
    out.status = status;
    out
}

fn os<S: AsRef<std::ffi::OsStr> + ?Sized>(s: &S) -> &std::ffi::OsStr {
    s.as_ref()
}

/// A stale-looking lock (dead pid, an hour old) that is not ours to delete.
fn plant_old_dead_lock(path: &Path) {
    write_reference_lock(path, dead_pid(), 3_600_000, None);
    age_file(path, Duration::from_secs(3600));
}

#[test]
fn lock_and_transcript_are_private_even_with_umask_000() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let lock = lock_of(&t);
    // `sh -c 'umask 000; exec session-lock __hold T'`
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$0\" __hold \"$1\"")
        .arg(HELPER)
        .arg(&t)
        .env("SESSION_LOCK_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = within(WAIT, "holder under umask 000", move || {
        let mut l = String::new();
        BufReader::new(stdout).read_line(&mut l).unwrap();
        l
    });
    assert!(line.starts_with("ready"), "{line:?}");
    assert_eq!(mode(&lock), 0o600, "lock file mode under umask 000");
    assert!(
        !std::fs::symlink_metadata(&lock)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    drop(child.stdin.take());
    assert!(wait_child(&mut child, WAIT, "holder").success());
    assert!(!lock.exists());

    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$0\" append \"$1\" hello")
        .arg(BIN)
        .arg(&t)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(mode(&t), 0o600, "transcript created under umask 000");
    assert_eq!(names(dir.path()), vec!["s.jsonl"]);
}

#[test]
fn status_and_clean_never_follow_a_symlink_at_the_lock_path() {
    let root = tempfile::tempdir().unwrap();
    let sessions = root.path().join("sessions");
    let elsewhere = root.path().join("elsewhere");
    std::fs::create_dir(&sessions).unwrap();
    std::fs::create_dir(&elsewhere).unwrap();
    let target = elsewhere.join("real.jsonl.lock");
    plant_old_dead_lock(&target);
    let before = std::fs::read(&target).unwrap();
    let link = sessions.join("x.jsonl.lock");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    // An empty old file behind a second link.
    let empty = elsewhere.join("empty.jsonl.lock");
    std::fs::write(&empty, b"").unwrap();
    age_file(&empty, Duration::from_secs(3600));
    std::os::unix::fs::symlink(&empty, sessions.join("y.jsonl.lock")).unwrap();

    let status = cli(&[os("status"), os(&link)]);
    assert_eq!(status.status.code(), Some(5), "{status:?}");
    let err = String::from_utf8_lossy(&status.stderr);
    assert!(
        err.contains("symlink") && err.contains("x.jsonl.lock"),
        "{err}"
    );
    let status_dir = cli(&[os("status"), os(&sessions)]);
    assert_eq!(status_dir.status.code(), Some(5), "{status_dir:?}");

    let dry = cli(&[os("clean"), os("--dry-run"), os(&sessions)]);
    let clean = cli(&[os("clean"), os(&sessions)]);
    assert_eq!(clean.status.code(), Some(5), "{clean:?}");
    // The table keeps the path last: the error goes to stderr, one line
    // naming the path, and the row's action is `error`.
    let err = String::from_utf8_lossy(&clean.stderr);
    assert!(
        err.lines()
            .any(|l| l.contains("symlink") && l.contains("x.jsonl.lock")),
        "{err}"
    );
    let text = String::from_utf8_lossy(&clean.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("error ") && l.ends_with("x.jsonl.lock")),
        "{text}"
    );
    for out in [&dry, &clean] {
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("removed "),
            "{out:?}"
        );
    }
    // Both links and both targets survive, the targets byte for byte.
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(std::fs::symlink_metadata(sessions.join("y.jsonl.lock")).is_ok());
    assert_eq!(std::fs::read(&target).unwrap(), before);
    assert!(empty.exists());

    // The library sweep and acquire agree.
    let swept = session_lock::sweep::sweep(&sessions, &Default::default()).unwrap();
    assert!(swept.locks.iter().all(|r| !r.removed && r.error.is_some()));
    let err =
        session_lock::try_acquire_with(sessions.join("x.jsonl"), &LockOptions::new()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotAFile, "{err}");
    assert_eq!(std::fs::read(&target).unwrap(), before);
}

#[test]
fn a_symlinked_parent_component_is_resolved_and_only_stale_locks_are_removed() {
    // The design resolves the directory with realpath (a symlinked directory
    // shares one lock); what clean removes is still judged through a
    // descriptor opened with O_NOFOLLOW on the lock file itself.
    let root = tempfile::tempdir().unwrap();
    let real = root.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let link = root.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    plant_old_dead_lock(&real.join("dead.jsonl.lock"));
    let live = Holder::start(&real.join("live.jsonl"), &[]);
    std::fs::write(real.join("notes.txt"), b"keep").unwrap();
    age_file(&real.join("notes.txt"), Duration::from_secs(3600));
    // A symlink to a directory, named like a lock: not recursed, not removed.
    let outside = root.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    plant_old_dead_lock(&outside.join("o.jsonl.lock"));
    std::os::unix::fs::symlink(&outside, real.join("sub.jsonl.lock")).unwrap();

    let status = cli(&[os("status"), os(&link.join("dead.jsonl"))]);
    assert_eq!(status.status.code(), Some(0), "{status:?}");
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("reclaimable"),
        "{status:?}"
    );
    let clean = cli(&[os("clean"), os(&link)]);
    let out = String::from_utf8_lossy(&clean.stdout);
    assert!(
        out.contains("removed") && out.contains("dead.jsonl.lock"),
        "{out}"
    );
    assert!(!real.join("dead.jsonl.lock").exists());
    assert!(real.join("live.jsonl.lock").exists(), "live lock removed");
    assert!(real.join("notes.txt").exists());
    assert!(
        std::fs::symlink_metadata(real.join("sub.jsonl.lock"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        outside.join("o.jsonl.lock").exists(),
        "reached through a symlink"
    );
    assert!(live.release().success());
}

#[test]
fn the_library_sweep_only_considers_session_lock_files() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["Cargo.lock", "yarn.lock", "Gemfile.lock", "flake.lock"] {
        let p = dir.path().join(name);
        std::fs::write(&p, b"# not a session lock\n").unwrap();
        age_file(&p, Duration::from_secs(3600));
    }
    let swept = session_lock::sweep::sweep(dir.path(), &Default::default()).unwrap();
    assert!(swept.locks.is_empty(), "{:?}", swept.locks);
    assert_eq!(names(dir.path()).len(), 4);
}

/// `session-lock clean DIR` must judge only transcript locks (`*.jsonl.lock`
/// by default; `--suffix` must be longer than `.lock`): other software's
/// lock files (`Cargo.lock`, `yarn.lock`, `Gemfile.lock`, `flake.lock`,
/// `poetry.lock`) do not parse as owner records and would otherwise be
/// judged orphans and deleted once 5 s old (a bug found and fixed in
/// issue 7).
#[test]
fn clean_never_deletes_other_software_lock_files() {
    let dir = tempfile::tempdir().unwrap();
    let names_in = ["Cargo.lock", "yarn.lock", "Gemfile.lock", "flake.lock"];
    for name in names_in {
        let p = dir.path().join(name);
        std::fs::write(&p, b"# This file is automatically @generated\n").unwrap();
        age_file(&p, Duration::from_secs(3600));
    }
    let out = cli(&[os("clean"), os(dir.path())]);
    let left = names(dir.path());
    assert_eq!(
        left.len(),
        names_in.len(),
        "clean removed other software's lock files: left {left:?}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn append_never_writes_through_a_symlinked_transcript() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, b"precious\n").unwrap();
    let t = dir.path().join("s.jsonl");
    std::os::unix::fs::symlink(&victim, &t).unwrap();
    let g = session_lock::try_acquire_with(&t, &LockOptions::new()).unwrap();
    let err = g.append_line("injected").unwrap_err();
    assert!(err.to_string().contains("s.jsonl"), "{err}");
    g.release().unwrap();
    let out = cli(&[os("append"), os(&t), os("injected")]);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious\n");
    assert_eq!(names(dir.path()), vec!["s.jsonl", "victim.txt"]);
}

#[test]
fn clean_through_a_hard_link_removes_only_the_name() {
    // A hostile user hard-links someone's file at a lock name; once old it
    // is an orphan and clean unlinks the name, but the data lives on under
    // its own name.
    let root = tempfile::tempdir().unwrap();
    let sessions = root.path().join("sessions");
    std::fs::create_dir(&sessions).unwrap();
    let victim = root.path().join("victim.db");
    std::fs::write(&victim, b"SQLite format 3\0 data").unwrap();
    std::fs::hard_link(&victim, sessions.join("h.jsonl.lock")).unwrap();
    age_file(&victim, Duration::from_secs(3600));
    let out = cli(&[os("clean"), os(&sessions)]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!sessions.join("h.jsonl.lock").exists());
    assert_eq!(std::fs::read(&victim).unwrap(), b"SQLite format 3\0 data");
}

/// Our record as a slot or temp file holds it: `"witness": "flock"` and a
/// 32-hex token, on one line.
fn our_record(token: &str) -> String {
    format!(
        "{{\"pid\":{},\"createdAt\":\"2026-01-01T00:00:00.000Z\",\"token\":\"{token}\",\"witness\":\"flock\",\"version\":1}}\n",
        dead_pid()
    )
}

/// Write `contents` at `path`, mode 0600, an hour old.
fn plant(path: &Path, contents: &[u8]) {
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    age_file(path, Duration::from_secs(3600));
}

/// A child process that keeps `path` open (`how`: `open`, `flock` with
/// flock(1), or `posix`: a POSIX record lock with python3's `lockf`) until
/// its stdin closes. A missing tool fails the test: flock(1) comes with
/// util-linux (as in `cli/tests/queue.rs`); python3 is needed only by the
/// ignored test below (docs/testing.md, "Tests that need a component").
fn keep(path: &Path, how: &str) -> std::process::Child {
    let mut c = match how {
        "open" => {
            let mut c = std::process::Command::new("sh");
            c.args(["-c", "exec 3<\"$0\"; echo ready; read x"])
                .arg(path);
            c
        }
        "flock" => {
            let mut c = std::process::Command::new("flock");
            c.args(["-s"]).arg(path).args(["-c", "echo ready; read x"]);
            c
        }
        _ => {
            let mut c = std::process::Command::new("python3");
            c.args([
                "-c",
                "import fcntl,sys\nf=open(sys.argv[1],'r+')\nfcntl.lockf(f,fcntl.LOCK_EX)\nprint('ready',flush=True)\nsys.stdin.read()",
            ])
            .arg(path);
            c
        }
    };
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("the {how} case needs its tool ({c:?}): {e}"));
    let stdout = child.stdout.take().unwrap();
    let line = within(WAIT, "child keeping a file", move || {
        let mut l = String::new();
        let _ = BufReader::new(stdout).read_line(&mut l);
        l
    });
    if !line.starts_with("ready") {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the {how} case: the child said {line:?}, not ready");
    }
    child
}

/// Create `path` with `contents` as uid/gid 65533 (setpriv), mode 0600.
/// Needs root and setpriv(1): the test that calls it is ignored by default.
fn plant_as_other_user(dir: &Path, path: &Path, contents: &str) {
    require_root_and_setpriv();
    let old = mode(dir);
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let made = std::process::Command::new("setpriv")
        .args([
            "--reuid=65533",
            "--regid=65533",
            "--clear-groups",
            "sh",
            "-c",
        ])
        .arg("umask 077; printf '%s' \"$1\" > \"$0\"")
        .arg(path)
        .arg(contents)
        .status();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(old)).unwrap();
    match made {
        Ok(s) if s.success() => age_file(path, Duration::from_secs(3600)),
        other => panic!(
            "setpriv could not plant {} as uid 65533: {other:?}",
            path.display()
        ),
    }
}

/// What a `clean` case plants beyond the files every case has.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Extra {
    /// Nothing: needs only flock(1) and sh.
    Nothing,
    /// A file of ours as another user made it (root, setpriv).
    OtherOwner,
    /// Files under a POSIX record lock (python3).
    PosixLocks,
}

/// `clean` removes a file next to the locks only if its exact name is one
/// we create and its type, owner, mode, links and contents are what we
/// create, and nobody else has it open or locked. Everything else is kept
/// and listed with a reason; what it removes (queue files included) is
/// listed, and `--dry-run` lists the same set.
#[test]
fn clean_keeps_look_alikes_and_files_in_use_and_lists_what_it_removes() {
    clean_case(Extra::Nothing);
}

/// The same, with a file that looks like ours but belongs to another user.
#[test]
#[ignore = "needs root and setpriv(1) to plant another user's file (CI runs it as root): cargo test --all-features --test security -- --ignored"]
fn clean_keeps_another_users_look_alike() {
    clean_case(Extra::OtherOwner);
}

/// The same, with files another process holds a POSIX record lock on.
#[test]
#[ignore = "needs python3, to hold a POSIX record lock in another process (CI checks for it): cargo test --all-features --test security -- --ignored"]
fn clean_keeps_files_under_another_processes_posix_lock() {
    require(runs("python3", "--version"), "python3", "Debian: python3");
    clean_case(Extra::PosixLocks);
}

fn clean_case(extra: Extra) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tok = "0123456789abcdef0123456789abcdef";
    // Ours and abandoned: removed.
    let ours = [
        d.join(".a.jsonl.lock.w0.tmp"),
        d.join(format!(".a.jsonl.lock.{tok}.tmp")),
        d.join("gone.jsonl.lock.queue"),
    ];
    plant(&ours[0], our_record(tok).as_bytes());
    plant(&ours[1], our_record(tok).as_bytes());
    plant(&ours[2], b"");
    // Kept, with the reason clean must give.
    let mut kept: Vec<(std::path::PathBuf, &str)> = Vec::new();
    for name in [
        ".yarn.lock.tmp",
        ".Cargo.lock.tmp",
        ".notes.lock.backup.tmp",
        ".x.jsonl.lock.w99.tmp",
        ".x.jsonl.lock.w01.tmp",
        ".x.jsonl.lock.0123.tmp",
    ] {
        plant(&d.join(name), our_record(tok).as_bytes());
        kept.push((d.join(name), "not-our-name"));
    }
    plant(&d.join(".b.jsonl.lock.w1.tmp"), b"precious user data\n");
    kept.push((d.join(".b.jsonl.lock.w1.tmp"), "foreign-contents"));
    plant(&d.join(".c.jsonl.lock.w0.tmp"), our_record(tok).as_bytes());
    std::fs::hard_link(d.join(".c.jsonl.lock.w0.tmp"), d.join("c-other-name")).unwrap();
    kept.push((d.join(".c.jsonl.lock.w0.tmp"), "hard-linked"));
    if extra == Extra::OtherOwner {
        let other = d.join(".d.jsonl.lock.w0.tmp");
        plant_as_other_user(d, &other, &our_record(tok));
        kept.push((other, "other-owner"));
    }
    let mut children = Vec::new();
    for (name, how, why) in [
        (".e.jsonl.lock.w0.tmp", "open", "open-elsewhere"),
        (".f.jsonl.lock.w0.tmp", "flock", "locked"),
        (".g.jsonl.lock.w0.tmp", "posix", "locked"),
    ] {
        if how == "posix" && extra != Extra::PosixLocks {
            continue;
        }
        let p = d.join(name);
        plant(&p, our_record(tok).as_bytes());
        children.push(keep(&p, how));
        kept.push((p, why));
    }
    plant(&d.join("h.jsonl.lock.queue"), b"not a queue\n");
    if extra == Extra::PosixLocks {
        children.push(keep(&d.join("h.jsonl.lock.queue"), "posix"));
    }
    kept.push((d.join("h.jsonl.lock.queue"), "not-empty"));
    plant(&d.join("i.jsonl.lock.queue"), b"");
    std::fs::hard_link(d.join("i.jsonl.lock.queue"), d.join("i-other-name")).unwrap();
    kept.push((d.join("i.jsonl.lock.queue"), "hard-linked"));

    let snapshot = |p: &Path| {
        let m = std::fs::symlink_metadata(p).unwrap();
        (std::fs::read(p).unwrap(), m.modified().unwrap(), m.ino())
    };
    use std::os::unix::fs::MetadataExt;
    let before: Vec<_> = kept.iter().map(|(p, _)| snapshot(p)).collect();

    // (path, action, reasons) of each row of `clean --json`.
    let rows = |out: &Output| -> Vec<(String, String, String)> {
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["lockPath"].as_str().unwrap_or_default().to_owned(),
                    v["action"].as_str().unwrap_or_default().to_owned(),
                    v["reasons"][0].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    let listed = |rows: &[(String, String, String)], action: &str| {
        let mut v: Vec<String> = rows
            .iter()
            .filter(|r| r.1 == action)
            .map(|r| r.0.clone())
            .collect();
        v.sort();
        v
    };
    let mut want_removed: Vec<String> = ours.iter().map(|p| p.display().to_string()).collect();
    want_removed.sort();

    let dry = cli(&[os("clean"), os("--dry-run"), os("--json"), os(d)]);
    let dry_rows = rows(&dry);
    assert_eq!(
        listed(&dry_rows, "would-remove"),
        want_removed,
        "{dry_rows:#?}"
    );
    for p in &ours {
        assert!(p.exists(), "the dry run removed {}", p.display());
    }
    let out = cli(&[os("clean"), os("--json"), os(d)]);
    let out_rows = rows(&out);
    assert_eq!(listed(&out_rows, "removed"), want_removed, "{out_rows:#?}");
    for p in &ours {
        assert!(!p.exists(), "clean kept {}", p.display());
    }
    for ((p, why), was) in kept.iter().zip(&before) {
        assert!(p.exists(), "clean removed {}: {out_rows:#?}", p.display());
        assert_eq!(&snapshot(p), was, "clean changed {}", p.display());
        let shown = p.display().to_string();
        for (what, rows) in [("clean", &out_rows), ("clean --dry-run", &dry_rows)] {
            assert!(
                rows.iter()
                    .any(|r| r.0 == shown && r.1 == "kept" && r.2 == *why),
                "{what} did not report {shown} kept ({why}): {rows:#?}"
            );
        }
    }
    // The table says the same, one row per file.
    let table = cli(&[os("clean"), os("--dry-run"), os(d)]);
    let text = String::from_utf8_lossy(&table.stdout).into_owned();
    eprintln!("clean --dry-run after the clean:\n{text}");
    for (p, why) in &kept {
        assert!(
            text.lines().any(|l| l.starts_with("kept")
                && l.contains(why)
                && l.ends_with(&p.display().to_string())),
            "no row for {}: {text}",
            p.display()
        );
    }
    // `status DIR` lists the files that are not provably ours, with the
    // reason (not those that are ours and only busy: open or locked).
    let status = cli(&[os("status"), os(d)]);
    let text = String::from_utf8_lossy(&status.stdout).into_owned();
    for (p, why) in &kept {
        let busy = matches!(*why, "open-elsewhere" | "locked");
        let shown = text
            .lines()
            .any(|l| l.contains(why) && l.ends_with(&p.display().to_string()));
        assert_eq!(shown, !busy, "status and {} ({why}):\n{text}", p.display());
    }
    for mut c in children {
        drop(c.stdin.take());
        wait_child(&mut c, WAIT, "child keeping a file");
    }
}
