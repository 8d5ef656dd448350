//! Issue 19: odd or hostile files at the names the protocol uses, names at
//! the filesystem's limit, non-UTF-8 names, modes under a hostile umask,
//! missing directories and lock-protocol names given as transcripts. Each
//! case runs the library in-process and the `session-lock` binary as a
//! child, every wait bounded (see `docs/threat-model.md`, "Odd files at
//! each name").

#[path = "../../tests/common/mod.rs"]
mod common;

use common::*;
use session_lock::{ErrorKind, LockOptions, try_acquire_with};
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Bound on anything that must fail fast: a hang (the bug) fails the test
/// with a message after this, never a timing threshold on success.
const FAST: Duration = Duration::from_secs(10);

fn quick() -> LockOptions {
    LockOptions::new().with_timeout(Duration::from_secs(10))
}

fn os<S: AsRef<OsStr> + ?Sized>(s: &S) -> &OsStr {
    s.as_ref()
}

/// Run a command to completion within `limit` (killed and failed after).
fn run_bounded(mut c: Command, limit: Duration, what: &str) -> Output {
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let status = wait_child(&mut child, limit, what);
    let mut out = child.wait_with_output().unwrap();
    out.status = status;
    out
}

fn cli(args: &[&OsStr]) -> Output {
    let mut c = bin();
    c.args(args);
    run_bounded(c, FAST, &format!("session-lock {args:?}"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Raw names in `dir` (bytes, not lossily converted), sorted.
fn raw_names(dir: &Path) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_vec())
        .collect();
    v.sort();
    v
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[derive(Debug, Clone, Copy)]
enum Odd {
    Fifo,
    Socket,
    Dir,
    CharDevice,
}

impl Odd {
    /// The word our messages use for it (`sys::file_kind`).
    fn word(self) -> &'static str {
        match self {
            Odd::Fifo => "FIFO",
            Odd::Socket => "socket",
            Odd::Dir => "directory",
            Odd::CharDevice => "device",
        }
    }

    /// Make one at `path`; `Err(reason)` where this machine cannot (only a
    /// character device, which needs root: see [`plant`]).
    fn try_plant(self, path: &Path) -> Result<(), String> {
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        match self {
            Odd::Fifo => {
                // SAFETY: a valid NUL-terminated path.
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0, "mkfifo");
            }
            Odd::Socket => {
                // Dropping the listener leaves the socket file behind.
                drop(std::os::unix::net::UnixListener::bind(path).unwrap());
            }
            Odd::Dir => std::fs::create_dir(path).unwrap(),
            Odd::CharDevice => {
                // The null device's numbers (1, 3): writes vanish silently,
                // which is exactly what must not be mistaken for success.
                let dev = libc::makedev(1, 3);
                // SAFETY: a valid NUL-terminated path.
                let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, dev) };
                if rc != 0 {
                    return Err(format!(
                        "mknod of a character device failed ({}); needs root and a filesystem without nodev",
                        std::io::Error::last_os_error()
                    ));
                }
                // A nodev mount lets mknod succeed but refuses opens: then
                // nothing could be written to it anyway.
                if let Err(e) = std::fs::OpenOptions::new().write(true).open(path) {
                    return Err(format!("the character device cannot be opened here ({e})"));
                }
            }
        }
        Ok(())
    }
}

/// Make `odd` at `path`, or fail the test with why this machine cannot.
/// The tests that plant a character device are ignored by default
/// (docs/testing.md, "Tests that need a component"): run, they fail here
/// rather than pass without running.
fn plant(odd: Odd, path: &Path) {
    if let Err(why) = odd.try_plant(path) {
        panic!("cannot make a {} at {}: {why}", odd.word(), path.display());
    }
}

/// An odd file at the transcript's name: refused with its type and path,
/// the lock never left behind, by the library (before and after the lock
/// is taken) and by `session-lock append`.
fn odd_transcript(odd: Odd) {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    plant(odd, &t);
    let lock = lock_of(&t);

    // Library: acquire refuses it before taking the lock.
    let t2 = t.clone();
    let err = within(FAST, "try_acquire on an odd transcript", move || {
        try_acquire_with(&t2, &quick()).map(drop)
    })
    .expect_err("acquire of an odd transcript must fail");
    assert_eq!(err.kind(), ErrorKind::NotAFile, "{odd:?}: {err}");
    assert_eq!(err.found(), Some(odd.word()), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(odd.word()) && msg.contains(&*t.to_string_lossy()),
        "{msg}"
    );
    assert!(!lock.exists(), "{odd:?}: the lock was left behind");

    // CLI append: fails fast, rc 5, type and path in the message, no lock.
    let out = cli(&[os("append"), os("-w"), os("5"), os(&t), os("line")]);
    assert_eq!(out.status.code(), Some(5), "{odd:?}: {}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains(odd.word()) && e.contains(&*t.to_string_lossy()),
        "{odd:?}: {e}"
    );
    assert!(!lock.exists(), "{odd:?}: append left the lock behind");
    // Nothing of the lock is left: once the odd file is gone, the
    // transcript can be locked at once.
    remove(&t);
    try_acquire_with(&t, &quick()).unwrap().release().unwrap();

    // Planted after the lock was taken: the append fails fast, without
    // blocking in open, and the lock is released when the guard goes.
    let t3 = dir.path().join("late.jsonl");
    let guard = try_acquire_with(&t3, &quick()).unwrap();
    plant(odd, &t3);
    let err = within(FAST, "append_line on an odd transcript", move || {
        let r = guard.append_line("x");
        drop(guard);
        r
    })
    .expect_err("append to an odd transcript must fail");
    assert_eq!(err.kind(), ErrorKind::NotAFile, "{odd:?}: {err}");
    assert!(err.to_string().contains(odd.word()), "{err}");
    assert!(!lock_of(&t3).exists(), "{odd:?}: the lock was left behind");
}

fn remove(p: &Path) {
    if p.is_dir() {
        std::fs::remove_dir(p).unwrap();
    } else {
        std::fs::remove_file(p).unwrap();
    }
}

#[test]
fn a_fifo_at_the_transcript_fails_fast_and_releases() {
    odd_transcript(Odd::Fifo);
}

#[test]
fn a_socket_at_the_transcript_fails_fast_and_releases() {
    odd_transcript(Odd::Socket);
}

#[test]
fn a_directory_at_the_transcript_fails_fast_and_releases() {
    odd_transcript(Odd::Dir);
}

#[test]
#[ignore = "needs root (mknod) and a filesystem without nodev (CI runs it as root): cargo test --all-features --test odd_files -- --ignored"]
fn a_character_device_at_the_transcript_is_never_written() {
    odd_transcript(Odd::CharDevice);
}

/// Odd files at the queue's and a witness slot's name: the lock still
/// works (without the queue, with another slot), contended or not, and
/// nothing hangs or is removed.
#[test]
fn odd_files_at_the_queue_and_slot_names_never_hang() {
    for odd in [Odd::Fifo, Odd::Socket, Odd::Dir] {
        odd_at_the_queue_and_slot_names(odd);
    }
}

#[test]
#[ignore = "needs root (mknod) and a filesystem without nodev (CI runs it as root): cargo test --all-features --test odd_files -- --ignored"]
fn a_character_device_at_the_queue_and_slot_names_never_hangs() {
    odd_at_the_queue_and_slot_names(Odd::CharDevice);
}

fn odd_at_the_queue_and_slot_names(odd: Odd) {
    for at in ["queue", "slot"] {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("s.jsonl");
        let name = match at {
            "queue" => dir.path().join("s.jsonl.lock.queue"),
            _ => dir.path().join(".s.jsonl.lock.w0.tmp"),
        };
        plant(odd, &name);
        let what = format!("{odd:?} at the {at} name");
        // Uncontended, in-process.
        let t2 = t.clone();
        within(FAST, &what, move || {
            let g = session_lock::acquire_with(&t2, &quick()).unwrap();
            g.append_line("one").unwrap();
            g.release().unwrap();
        });
        // Contended across processes: a waiting `append` goes through
        // once the holder lets go.
        let holder = Holder::start(&t, &[]);
        let mut waiter = bin();
        waiter
            .args([os("append"), os("-w"), os("10"), os(&t), os("two")])
            .stdin(Stdio::null())
            .stderr(Stdio::piped());
        let mut waiter = waiter.spawn().unwrap();
        assert!(holder.release().success(), "{what}");
        let status = wait_child(&mut waiter, FAST, &what);
        assert!(status.success(), "{what}: append rc {status:?}");
        assert_eq!(std::fs::read_to_string(&t).unwrap(), "one\ntwo\n", "{what}");
        let meta = std::fs::symlink_metadata(&name).unwrap();
        assert!(!meta.is_file(), "{what}: the odd file was replaced");
        assert!(!lock_of(&t).exists(), "{what}: lock left behind");
        session_lock::close_idle();
    }
}

/// The filesystem's limit on a name in `dir`.
fn name_max(dir: &Path) -> usize {
    rustix::fs::statvfs(dir).unwrap().f_namemax as usize
}

/// The longest name derived from a transcript `<T>` is a named temp file
/// `.<T>.lock.<32 hex>.tmp`: 43 bytes more.
const LONGEST_SUFFIX: usize = 43;

#[test]
fn the_longest_accepted_name_survives_a_crash_and_one_byte_more_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("ok");
    std::fs::create_dir(&dir).unwrap();
    let longest = name_max(&dir) - LONGEST_SUFFIX;
    let name = format!("{}.jsonl", "a".repeat(longest - ".jsonl".len()));
    assert_eq!(name.len(), longest);
    let t = dir.join(&name);

    // A holder on the named-temp-file path, SIGKILLed mid-hold; the CLI
    // takes over (reclaim guard, slot names).
    let mut h = Holder::spawn_unready(&t, &[], &[("SESSION_LOCK_NO_TMPFILE", Path::new("1"))]);
    h.wait_ready();
    h.kill9();
    assert!(lock_of(&t).exists(), "the killed holder's lock");
    let out = cli(&[os("append"), os("-w"), os("10"), os(&t), os("after-crash")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // A holder on the slot path, SIGKILLed; the library takes over.
    Holder::start(&t, &[]).kill9();
    let g = session_lock::acquire_with(&t, &quick()).unwrap();
    g.append_line("library").unwrap();
    g.release().unwrap();
    assert_eq!(
        std::fs::read_to_string(&t).unwrap(),
        "after-crash\nlibrary\n"
    );
    assert!(!lock_of(&t).exists());
    session_lock::close_idle();

    // One byte longer: refused before any file is made, with the limit.
    let fresh = root.path().join("too-long");
    std::fs::create_dir(&fresh).unwrap();
    let long = fresh.join(format!("b{name}"));
    let err = try_acquire_with(&long, &quick()).map(drop).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidName, "{err}");
    assert!(err.to_string().contains(&longest.to_string()), "{err}");
    assert_eq!(err.longest_name(), Some(longest), "{err}");
    for args in [
        vec![os("append"), os(&long), os("x")],
        vec![os("exec"), os(&long), os("true")],
    ] {
        let out = cli(&args);
        assert_eq!(out.status.code(), Some(5), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&longest.to_string()),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(raw_names(&fresh), Vec::<Vec<u8>>::new(), "nothing created");
}

#[test]
fn non_utf8_names_get_their_own_lock_queue_and_slots() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join(OsStr::from_bytes(b"s\xff.jsonl"));
    let b = dir.path().join(OsStr::from_bytes(b"s\xfe.jsonl"));
    // Both held at once by one process, then released (slots parked).
    let ga = session_lock::acquire_with(&a, &quick()).unwrap();
    let gb = session_lock::acquire_with(&b, &quick()).unwrap();
    let lock_a = lock_of(&a);
    assert!(lock_a.exists(), "lock of a under its exact name");
    ga.append_line("a1").unwrap();
    gb.append_line("b1").unwrap();
    ga.release().unwrap();
    gb.release().unwrap();
    let names = raw_names(dir.path());
    let replacement = "\u{FFFD}".as_bytes();
    for n in &names {
        assert!(
            !n.windows(replacement.len()).any(|w| w == replacement),
            "a name was lossily converted: {:?}",
            OsString::from_vec(n.clone())
        );
    }
    // Each transcript's derived names carry its own bytes.
    for (t, byte) in [(&a, 0xffu8), (&b, 0xfe)] {
        let derived = names
            .iter()
            .filter(|n| n.contains(&byte) && n.as_slice() != t.file_name().unwrap().as_bytes())
            .count();
        let slots_on = std::env::var_os("SESSION_LOCK_NO_SLOTS").is_none()
            && std::env::var_os("SESSION_LOCK_NO_TMPFILE").is_none();
        // Its parked slot when slots are on (an uncontended hold makes no
        // queue file).
        assert_eq!(derived, usize::from(slots_on), "{names:?}");
    }
    session_lock::close_idle();
    // Contended: a's queue file carries a's bytes, not b's.
    let ga = session_lock::acquire_with(&a, &quick()).unwrap();
    let a2 = a.clone();
    let waiter = std::thread::spawn(move || {
        session_lock::acquire_with(&a2, &quick())
            .unwrap()
            .release()
            .unwrap()
    });
    let mut queue_a = lock_a.clone().into_os_string();
    queue_a.push(".queue");
    let queue_a = PathBuf::from(queue_a);
    wait_until(
        WAIT,
        || queue_a.exists(),
        || format!("no queue file under a's name: {:?}", raw_names(dir.path())),
    );
    ga.release().unwrap();
    waiter.join().unwrap();
    session_lock::close_idle();

    // The CLI: append and exec, each under the exact name.
    let out = cli(&[os("append"), os(&a), os("a2")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = cli(&[
        os("exec"),
        os(&b),
        os("sh"),
        os("-c"),
        os("ls -a \"$0\" > \"$0/listing\""),
        dir.path().as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let listing = std::fs::read(dir.path().join("listing")).unwrap();
    assert!(
        listing
            .split(|&b| b == b'\n')
            .any(|l| l == b"s\xfe.jsonl.lock"),
        "the command saw the lock under the exact name: {}",
        String::from_utf8_lossy(&listing)
    );
    std::fs::remove_file(dir.path().join("listing")).unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), b"a1\na2\n");
    assert_eq!(std::fs::read(&b).unwrap(), b"b1\n");
    assert!(!lock_of(&a).exists() && !lock_of(&b).exists());
}

/// Copy the binaries where an unprivileged user can run them.
fn binaries_for_others(root: &Path) -> (PathBuf, PathBuf) {
    let bins = root.join("bin");
    std::fs::create_dir(&bins).unwrap();
    std::fs::set_permissions(&bins, std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = |from: &str, name: &str| {
        let to = bins.join(name);
        std::fs::copy(from, &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
        to
    };
    (
        copy(BIN, "session-lock"),
        copy(HELPER, "session-lock-test-helper"),
    )
}

/// An unprivileged uid with no other use here.
const USER: u32 = 65533;

fn as_user_with_umask(umask: &str, program: &Path, args: &[&OsStr]) -> Command {
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={USER}"))
        .arg(format!("--regid={USER}"))
        .arg("--clear-groups")
        .arg("sh")
        .arg("-c")
        .arg(format!("umask {umask}; exec \"$@\""))
        .arg("sh")
        .arg(program)
        .args(args)
        .env("SESSION_LOCK_LOG", "warn");
    c
}

#[test]
#[ignore = "needs root and setpriv(1) to run as another user (CI runs it as root): cargo test --all-features --test odd_files -- --ignored"]
fn hostile_umasks_leave_private_files_the_same_user_can_take_over() {
    require_root_and_setpriv();
    // Each publish path: witness slots, named temp files (no slots
    // either), O_TMPFILE (no slots).
    for (umask, path_env) in [
        ("0277", None),
        ("0477", None),
        ("0477", Some("SESSION_LOCK_NO_TMPFILE")),
        ("0277", Some("SESSION_LOCK_NO_SLOTS")),
    ] {
        let umask_and_path = format!("umask {umask}, {path_env:?}");
        let umask_and_path = umask_and_path.as_str();
        let root = tempfile::tempdir().unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let (session_lock_bin, helper_bin) = binaries_for_others(root.path());
        let dir = root.path().join("sessions");
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(USER), Some(USER)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let t = dir.join("s.jsonl");

        // A holder of that user under that umask, SIGKILLed mid-hold.
        let mut holder = as_user_with_umask(umask, &helper_bin, &[os("__hold"), os(&t)]);
        if let Some(var) = path_env {
            holder.env(var, "1");
        }
        let mut holder = holder
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = holder.stdout.take().unwrap();
        let line = within(FAST, "holder under a hostile umask", move || {
            let mut l = String::new();
            BufReader::new(stdout).read_line(&mut l).unwrap();
            l
        });
        assert!(line.starts_with("ready"), "{umask_and_path}: {line:?}");
        assert_eq!(mode(&lock_of(&t)), 0o600, "{umask_and_path}: lock file");
        holder.kill().unwrap();
        wait_child(&mut holder, FAST, "killed holder");

        // The same user takes over, under the same umask, twice (the
        // transcript it created must still be writable to it).
        for line in ["one", "two"] {
            let mut c = as_user_with_umask(
                umask,
                &session_lock_bin,
                &[os("append"), os("-w"), os("5"), os(&t), os(line)],
            );
            if let Some(var) = path_env {
                c.env(var, "1");
            }
            let out = run_bounded(c, FAST, "takeover by the same user");
            assert_eq!(
                out.status.code(),
                Some(0),
                "{umask_and_path}: takeover failed: {}",
                stderr(&out)
            );
        }
        assert_eq!(std::fs::read_to_string(&t).unwrap(), "one\ntwo\n");
        assert!(!lock_of(&t).exists(), "{umask_and_path}: lock left behind");
        for n in all_names(&dir) {
            let p = dir.join(&n);
            assert_eq!(mode(&p), 0o600, "{umask_and_path}: {n}");
        }
    }
}

#[test]
fn a_missing_directory_is_an_error_naming_it_and_nothing_is_created() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("missing");
    let t = missing.join("s.jsonl");
    for args in [
        vec![os("append"), os(&t), os("x")],
        vec![os("exec"), os(&t), os("true")],
    ] {
        let out = cli(&args);
        assert_eq!(out.status.code(), Some(5), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&*missing.to_string_lossy()),
            "{}",
            stderr(&out)
        );
        assert!(!missing.exists(), "{args:?} created the directory");
    }
    // The library, by default: the same.
    let err = try_acquire_with(&t, &quick()).map(drop).unwrap_err();
    assert!(
        err.to_string().contains(&*missing.to_string_lossy()),
        "{err}"
    );
    assert!(err.to_string().contains("create_dirs"), "{err}");
    assert!(!missing.exists());
    // Asked to: every missing directory is made, private.
    let deep = missing.join("a/b/s.jsonl");
    let g = try_acquire_with(&deep, &quick().with_create_dirs(true)).unwrap();
    g.append_line("x").unwrap();
    g.release().unwrap();
    for d in [&missing, &missing.join("a"), &missing.join("a/b")] {
        assert_eq!(mode(d), 0o700, "{}", d.display());
    }
}

#[test]
fn protocol_names_are_refused_as_transcripts_with_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("x.jsonl");
    let holder = Holder::start(&t, &[]);
    let lock = lock_of(&t);
    let record = std::fs::read(&lock).unwrap();
    let before = all_names(dir.path());
    for (name, what) in [
        ("x.jsonl.lock", "lock file"),
        ("x.jsonl.lock.queue", "queue"),
        ("x.jsonl.lock.reclaim", "reclaim guard"),
        (".x.jsonl.lock.w0.tmp", "witness slot"),
        (
            ".x.jsonl.lock.0123456789abcdef0123456789abcdef.tmp",
            "temp file",
        ),
    ] {
        let p = dir.path().join(name);
        let err = try_acquire_with(&p, &quick()).map(drop).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidName, "{name}: {err}");
        assert_eq!(err.suggestion(), Some(t.as_path()), "{name}: {err}");
        let msg = err.to_string();
        assert!(
            msg.contains(what) && msg.contains("did you mean") && msg.contains("x.jsonl?"),
            "{name}: {msg}"
        );
        for args in [
            vec![os("append"), os("-w"), os("1"), os(&p), os("junk")],
            vec![os("exec"), os("-w"), os("1"), os(&p), os("true")],
        ] {
            let out = cli(&args);
            assert_ne!(out.status.code(), Some(0), "{args:?}");
            let e = stderr(&out);
            assert!(
                e.contains("did you mean") && e.contains("x.jsonl?"),
                "{args:?}: {e}"
            );
        }
        assert_eq!(
            std::fs::read(&lock).unwrap(),
            record,
            "{name}: record written"
        );
        assert_eq!(all_names(dir.path()), before, "{name}: files created");
    }
    assert!(holder.release().success());
}
