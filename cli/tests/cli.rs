//! The `session-lock` command line, driven as a user would, with real
//! processes.

#[path = "../../tests/common/mod.rs"]
mod common;

use common::*;
use std::io::Write;
use std::process::{Output, Stdio};

fn run(args: &[&str]) -> Output {
    let child = bin()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn session-lock");
    within(WAIT, "session-lock", move || {
        child.wait_with_output().unwrap()
    })
}

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn exec_holds_the_lock_while_cmd_runs_and_passes_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let lock = lock_of(&t);
    let script = format!("test -f '{}' && exit 7", lock.display());
    let out = run(&["exec", s(&t), "--", "sh", "-c", &script]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(!lock.exists(), "lock left after exec");
    let out = run(&["exec", s(&t), "--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.status.code(), Some(128 + 15));
    let out = run(&["exec", s(&t), "--", "definitely-not-a-command-xyz"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
}

#[test]
fn two_execs_on_one_file_serialise() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let marker = dir.path().join("inside");
    // mkdir fails if the other exec's command is inside at the same time.
    let script = format!(
        "mkdir '{0}' || exit 9; sleep 0.2; rmdir '{0}'",
        marker.display()
    );
    let children: Vec<_> = (0..3)
        .map(|_| {
            bin()
                .args(["exec", "--timeout", "30s", s(&t), "--", "sh", "-c", &script])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = within(WAIT, "exec", move || c.wait_with_output().unwrap());
        assert_eq!(
            out.status.code(),
            Some(0),
            "overlap or failure: {}",
            stderr(&out)
        );
    }
}

#[test]
fn exec_reports_busy_with_the_owner_and_a_distinct_code() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let holder = Holder::start(&t, &["--label", "nightly compaction"]);
    let out = run(&["exec", "--timeout", "1500ms", s(&t), "--", "true"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("waiting for the lock on"), "{err}");
    assert!(
        err.contains(&format!("held by pid={} alive=true", holder.pid())),
        "{err}"
    );
    assert!(err.contains("label=\"nightly compaction\""), "{err}");
    assert_eq!(err.matches("waiting for the lock").count(), 1, "{err}");
    assert!(err.contains("session file locked (timeout"), "{err}");
    assert!(holder.release().success());
}

#[test]
fn the_timeout_reported_is_the_one_asked_for_and_suffix_is_validated() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let holder = Holder::start(&t, &[]);
    // Past the 1 s notice, the error still names the whole timeout.
    let out = run(&["append", "--timeout", "1200ms", s(&t), "x"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("session file locked (timeout 1200ms)"),
        "{}",
        stderr(&out)
    );
    assert!(holder.release().success());
    for cmd in ["status", "clean"] {
        let out = run(&[cmd, "--suffix", ".lock", s(dir.path())]);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {}", stderr(&out));
        assert!(stderr(&out).contains("--suffix"), "{}", stderr(&out));
    }
}

#[test]
fn exec_terminates_the_command_when_the_lock_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let out = run(&["exec", "--max-hold", "300ms", s(&t), "--", "sleep", "30"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("max hold"), "{}", stderr(&out));
    assert!(!lock_of(&t).exists());
}

#[test]
fn append_from_eight_processes_gives_whole_lines() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let children: Vec<_> = (0..8)
        .map(|id| {
            let mut c = bin()
                .args(["append", "--timeout", "60s", s(&t), "-"])
                .stdin(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = c.stdin.take().unwrap();
            let body: String = (0..50)
                .map(|i| format!("{{\"w\":{id},\"i\":{i},\"pad\":\"{}\"}}\n", "x".repeat(200)))
                .collect();
            stdin.write_all(body.as_bytes()).unwrap();
            drop(stdin);
            c
        })
        .collect();
    for c in children {
        let out = within(WAIT, "append", move || c.wait_with_output().unwrap());
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let text = std::fs::read_to_string(&t).unwrap();
    assert_eq!(text.lines().count(), 400);
    for l in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("torn line {l:?}: {e}"));
        assert_eq!(v["pad"].as_str().map(str::len), Some(200));
    }
    // Each writer's lines are contiguous: one lock hold per `append`.
    let order: Vec<u64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["w"]
                .as_u64()
                .unwrap()
        })
        .collect();
    for chunk in order.chunks(50) {
        assert!(chunk.iter().all(|w| *w == chunk[0]), "interleaved appends");
    }
    let out = run(&["append", s(&t), "one", "two"]);
    assert!(out.status.success());
    assert!(std::fs::read_to_string(&t).unwrap().ends_with("one\ntwo\n"));
}

#[test]
fn clean_dry_run_removes_nothing_clean_removes_only_dead() {
    let dir = tempfile::tempdir().unwrap();
    let dead_t = dir.path().join("dead.jsonl");
    Holder::start(&dead_t, &[]).kill9();
    let live = Holder::start(&dir.path().join("live.jsonl"), &[]);
    let out = run(&["clean", "--dry-run", "--json", s(dir.path())]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["action"], "would-remove");
    assert_eq!(rows[0]["reasons"][0], "witness-released");
    assert_eq!(rows[1]["action"], "kept");
    assert!(lock_of(&dead_t).exists(), "dry run removed a file");

    let out = run(&["clean", s(dir.path())]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("removed") && l.contains("dead.jsonl.lock")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("kept") && l.contains("live.jsonl.lock")),
        "{table}"
    );
    assert!(!lock_of(&dead_t).exists());
    assert!(lock_of(&dir.path().join("live.jsonl")).exists());
    assert!(live.release().success());
}

#[test]
fn status_shows_owner_verdict_and_no_attention_the_lock_cannot_justify() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let holder = Holder::start(&t, &["--label", "gw"]);
    let out = run(&["status", "--json-lines", s(dir.path())]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value =
        serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(v["verdict"], "held");
    assert_eq!(v["pidAlive"], true);
    assert_eq!(v["record"]["pid"], holder.pid());
    assert_eq!(v["record"]["label"], "gw");
    // A lock held for a moment is not `long_running` (issue 10): the lock
    // alone says nothing about queues or progress.
    assert_eq!(v["attention"], serde_json::Value::Null, "{v}");
    let out = run(&["status", s(&t)]);
    let table = String::from_utf8(out.stdout).unwrap();
    let row = table.lines().nth(1).unwrap_or_default();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[..3],
        ["held", &holder.pid().to_string(), "true"],
        "{table}"
    );
    assert_eq!(cells[5], "-", "ATTENTION of a young lock: {table}");
    assert!(holder.release().success());
    let out = run(&["status", s(&t)]);
    assert!(String::from_utf8(out.stdout).unwrap().contains("absent"));
}

#[test]
fn bad_input_gets_one_clear_line_and_the_documented_code() {
    let dir = tempfile::tempdir().unwrap();
    // A directory at the lock path.
    let d = dir.path().join("d.jsonl");
    std::fs::create_dir(lock_of(&d)).unwrap();
    let out = run(&["append", "--timeout", "100ms", s(&d), "x"]);
    assert_eq!(out.status.code(), Some(5));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("is a directory, not a regular file") && err.contains("d.jsonl.lock"),
        "{err}"
    );
    // A FIFO at the lock path: no hang.
    let f = dir.path().join("f.jsonl");
    let c = std::ffi::CString::new(s(&lock_of(&f))).unwrap();
    // SAFETY: valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let out = run(&["exec", "--timeout", "100ms", s(&f), "--", "true"]);
    assert_eq!(out.status.code(), Some(5));
    assert!(stderr(&out).contains("FIFO"), "{}", stderr(&out));
    let out = run(&["status", s(&f)]);
    assert_eq!(out.status.code(), Some(5));
    // A missing directory.
    let out = run(&["status", "/nonexistent-dir-xyz/s.jsonl"]);
    assert_eq!(out.status.code(), Some(5));
    assert!(
        stderr(&out).contains("/nonexistent-dir-xyz"),
        "{}",
        stderr(&out)
    );
    let out = run(&["clean", "/nonexistent-dir-xyz"]);
    assert_eq!(out.status.code(), Some(5));
    assert!(stderr(&out).contains("not a directory"), "{}", stderr(&out));
    // A directory as the transcript: its lock would land outside it.
    let sessions = dir.path().join("sessions");
    std::fs::create_dir(&sessions).unwrap();
    for args in [
        vec!["append", s(&sessions), "x"],
        vec!["exec", s(&sessions), "--", "true"],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(5), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("is a directory"), "{}", stderr(&out));
    }
    let with_slash = format!("{}/", s(&sessions));
    let out = run(&["append", &with_slash, "x"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        !dir.path().join("sessions.lock").exists(),
        "lock created outside the directory"
    );
    // A malformed duration: usage error.
    let out = run(&["exec", "--timeout", "5 parsecs", s(&d), "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid duration"),
        "{}",
        stderr(&out)
    );
    // Timing out is distinct from failing.
    let t = dir.path().join("busy.jsonl");
    let holder = Holder::start(&t, &[]);
    let out = run(&["append", "--timeout", "100ms", s(&t), "x"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(holder.release().success());
}

/// Run the binary in `dir` (so relative paths in commands stay inside it).
fn run_in(dir: &std::path::Path, args: &[&str]) -> Output {
    let child = bin()
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn session-lock");
    within(WAIT, "session-lock", move || {
        child.wait_with_output().unwrap()
    })
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// How `exec` and `append` read their command lines: what the command
/// receives, or the usage error (exit 2) and what it says.
#[test]
fn exec_options_follow_flock_conventions() {
    let dir = tempfile::tempdir().unwrap();
    let t = "s.jsonl";
    // (arguments, exit code, stdout, a piece of stderr)
    let table: &[(&[&str], i32, &str, &str)] = &[
        // `--` is optional; what follows the command is the command's.
        (&["exec", t, "printf", "%s|", "a"], 0, "a|", ""),
        (
            &["exec", t, "printf", "%s|", "-w", "3", "--verbose", "-n"],
            0,
            "-w|3|--verbose|-n|",
            "",
        ),
        (&["exec", "-w", "5", t, "printf", "%s|", "x"], 0, "x|", ""),
        (&["exec", t, "--", "printf", "%s|", "y"], 0, "y|", ""),
        (&["exec", t, "printf", "%s|", "--", "z"], 0, "--|z|", ""),
        (&["exec", "--", t, "printf", "%s|", "q"], 0, "q|", ""),
        // Options between FILE and CMD are still exec's.
        (&["exec", t, "-w", "2", "printf", "%s|", "r"], 0, "r|", ""),
        // `--timeout` is an alias of `-w`; durations in seconds or with units.
        (
            &["exec", "--timeout", "1.5", t, "printf", "ok"],
            0,
            "ok",
            "",
        ),
        (&["exec", "--wait=2s", t, "printf", "ok"], 0, "ok", ""),
        (&["exec", "-w", "500ms", t, "printf", "ok"], 0, "ok", ""),
        (
            &[
                "exec",
                "--max-hold",
                "1.5m",
                "--kill-after",
                "0.5",
                t,
                "printf",
                "ok",
            ],
            0,
            "ok",
            "",
        ),
        // `-c` is `/bin/sh -c`, after FILE or before it; its status passes through.
        (
            &["exec", t, "-c", "printf '%s|' \"$0\" ok; exit 7"],
            7,
            "/bin/sh|ok|",
            "",
        ),
        (&["exec", "-c", "printf c", t], 0, "c", ""),
        (&["exec", "--command", "printf c", t], 0, "c", ""),
        // -E only changes the code of a lock not obtained, not the command's.
        (&["exec", "-E", "42", t, "sh", "-c", "exit 1"], 1, "", ""),
        // A command starting with `-` needs `--`; otherwise a usage error says so.
        (&["exec", t, "-y"], 2, "", "'-- -y'"),
        (&["exec", t, "--", "-x"], 127, "", "cannot run \"-x\""),
        // Usage errors.
        (&["exec", t], 2, "", "a command is required"),
        (
            &["exec", t, "-c", "true", "extra"],
            2,
            "",
            "cannot be used with",
        ),
        (
            &["exec", "-n", "-w", "1", t, "true"],
            2,
            "",
            "cannot be used with",
        ),
        (&["exec", "-E", "256", t, "true"], 2, "", "0..=255"),
        (&["exec", "-E", "x", t, "true"], 2, "", "invalid value"),
        (
            &["exec", "-w", "5x", t, "true"],
            2,
            "",
            "500ms, 1.5s, 5m, 1h",
        ),
        (
            &["exec", "-w", "-1", t, "true"],
            2,
            "",
            "is negative; a duration",
        ),
        (
            &["exec", "--kill-after", "soon", t, "true"],
            2,
            "",
            "invalid duration \"soon\"",
        ),
        (
            &["exec", "--max-hold", "1.5x", t, "true"],
            2,
            "",
            "invalid duration",
        ),
        // append: -w and its alias.
        (&["append", "-w", "1.5", t, "l1"], 0, "", ""),
        (&["append", "--timeout", "2", t, "l2"], 0, "", ""),
        (
            &["append", "--wait", "5x", t, "l3"],
            2,
            "",
            "invalid duration",
        ),
    ];
    let mut fails = Vec::new();
    for (args, code, out, err) in table {
        let o = run_in(dir.path(), args);
        if o.status.code() != Some(*code) || stdout(&o) != *out || !stderr(&o).contains(err) {
            fails.push(format!(
                "{args:?}: want {code} {out:?} stderr ~ {err:?}; got {:?} {:?} stderr {:?}",
                o.status.code(),
                stdout(&o),
                stderr(&o)
            ));
        }
    }
    assert!(fails.is_empty(), "{}", fails.join("\n"));
    // Only the valid appends wrote, and exec never created the transcript.
    assert_eq!(
        std::fs::read_to_string(dir.path().join(t)).unwrap(),
        "l1\nl2\n"
    );
}

/// -n, -w 0, -w N and -E against a live holder: the command never runs, the
/// code is the conflict code, and -n / -w 0 do not wait (no waiting notice,
/// which a wait would print after 1 s).
#[test]
fn exec_nonblock_wait_and_conflict_exit_code_against_a_holder() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let ran = dir.path().join("ran");
    let mark = format!("touch '{}'", ran.display());
    let holder = Holder::start(&t, &[]);
    // (arguments before FILE, exit code, a piece of stderr)
    let table: &[(&[&str], i32, &str)] = &[
        (&["-n"], 3, "session file locked"),
        (&["--nonblock", "-E", "75"], 75, "session file locked"),
        (&["-w", "0", "-E", "9"], 9, "session file locked"),
        (&["-w", "0.2", "-E", "42"], 42, "timeout 200ms"),
        (&["-w", "1.2"], 3, "timeout 1200ms"),
        (&["--timeout", "0.3s", "-E", "0"], 0, "timeout 300ms"),
    ];
    for (opts, code, err) in table {
        let mut args = vec!["exec"];
        args.extend_from_slice(opts);
        args.extend_from_slice(&[s(&t), "-c", &mark]);
        let o = run(&args);
        assert_eq!(o.status.code(), Some(*code), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(err), "{args:?}: {}", stderr(&o));
        let waited = stderr(&o).contains("waiting for the lock");
        let nonblock = opts.contains(&"-n") || opts.contains(&"--nonblock") || opts[1] == "0";
        assert_eq!(waited, opts.contains(&"1.2"), "{args:?}: {}", stderr(&o));
        assert!(!(nonblock && waited), "{args:?} waited");
        assert!(!ran.exists(), "{args:?}: the command ran without the lock");
    }
    let o = run(&["append", "-w", "0.3", s(&t), "x"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("timeout 300ms"), "{}", stderr(&o));
    assert!(holder.release().success());
    // Free now: -n gets it at once and the command runs.
    let o = run(&["exec", "-n", "-E", "75", s(&t), "-c", &mark]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(ran.exists());
    assert_eq!(std::fs::read_to_string(&t).unwrap_or_default(), "");
}

#[test]
fn exec_verbose_says_so_and_is_quiet_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s.jsonl");
    let o = run(&["exec", s(&t), "true"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stderr(&o), "", "exec without --verbose printed something");
    let o = run(&["exec", "--verbose", s(&t), "true"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stderr(&o).contains(s(&t)), "{}", stderr(&o));
}

#[test]
fn every_subcommand_help_has_examples() {
    for sub in [
        "exec",
        "append",
        "status",
        "clean",
        "bench",
        "completions",
        "man",
    ] {
        let o = run(&[sub, "--help"]);
        assert_eq!(o.status.code(), Some(0), "{sub}");
        let help = stdout(&o);
        let examples = help
            .split_once("Examples:\n")
            .unwrap_or_else(|| panic!("{sub} --help has no Examples section:\n{help}"))
            .1;
        assert!(
            examples.contains(&format!("  session-lock {sub} ")),
            "{sub}: {examples}"
        );
    }
}

/// Lines of a command's stdout.
fn lines(o: &Output) -> Vec<String> {
    stdout(o).lines().map(str::to_owned).collect()
}

/// Where each whitespace-separated field of `line` starts (in chars).
fn field_starts(line: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut prev_space = true;
    for (i, c) in line.chars().enumerate() {
        if !c.is_whitespace() && prev_space {
            starts.push(i);
        }
        prev_space = c.is_whitespace();
    }
    starts
}

/// `status` and `clean` tables as an administrator reads them (compare
/// lslocks): a header row, aligned columns, the path last, compact ages,
/// `--noheadings`; ATTENTION only for a live lock held past 120 s.
#[test]
fn status_and_clean_tables_put_the_path_last_with_compact_ages() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let holder = Holder::start(&d.join("a.jsonl"), &[]);
    // A live owner (the holder) for 200 s; a dead one for 3 days 4 hours.
    write_reference_lock(&d.join("b.jsonl.lock"), holder.pid(), 200_000, None);
    write_reference_lock(
        &d.join("c.jsonl.lock"),
        1 << 30,
        (76 * 3600 + 60) * 1000,
        None,
    );
    let path = |name: &str| d.join(name).to_str().unwrap().to_owned();

    let out = run(&["status", s(d)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let table = lines(&out);
    let cells: Vec<Vec<&str>> = table
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        cells[0],
        [
            "VERDICT",
            "PID",
            "ALIVE",
            "AGE",
            "REASONS",
            "ATTENTION",
            "HOLDERS",
            "PATH"
        ],
        "{table:#?}"
    );
    assert_eq!(cells.len(), 4, "{table:#?}");
    let pid = holder.pid().to_string();
    assert_eq!(cells[1][..3], ["held", pid.as_str(), "true"], "{table:#?}");
    assert!(
        cells[1][3].ends_with('s') && cells[1][3].contains('.'),
        "{table:#?}"
    );
    assert_eq!(
        cells[1][5..],
        ["-", pid.as_str(), path("a.jsonl.lock").as_str()],
        "{table:#?}"
    );
    // 200 s (plus the test's own time, well under 10 s).
    assert!(cells[2][3].starts_with("3m2"), "{table:#?}");
    assert_eq!(
        cells[2][4..],
        [
            "-",
            "session.long_running",
            "-",
            path("b.jsonl.lock").as_str()
        ],
        "{table:#?}"
    );
    assert_eq!(
        cells[3][..4],
        ["reclaimable", "1073741824", "false", "3d4h"],
        "{table:#?}"
    );
    assert_eq!(
        cells[3][4..],
        ["dead-pid,too-old", "-", "-", path("c.jsonl.lock").as_str()],
        "{table:#?}"
    );
    // Aligned: every field starts in its header's column.
    let starts = field_starts(&table[0]);
    for l in &table {
        assert_eq!(field_starts(l), starts, "misaligned: {table:#?}");
    }
    let bare = lines(&run(&["status", "--noheadings", s(d)]));
    assert_eq!(bare.len(), 3, "{bare:#?}");
    assert!(bare[0].starts_with("held "), "{bare:#?}");

    let out = run(&["clean", "--dry-run", s(d)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let table = lines(&out);
    let cells: Vec<Vec<&str>> = table
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        cells[0],
        [
            "ACTION", "VERDICT", "PID", "ALIVE", "AGE", "REASONS", "PATH"
        ],
        "{table:#?}"
    );
    let actions: Vec<(&str, &str)> = cells[1..]
        .iter()
        .map(|c| (c[0], *c.last().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("kept", path("a.jsonl.lock").as_str()),
            ("kept", path("b.jsonl.lock").as_str()),
            ("would-remove", path("c.jsonl.lock").as_str()),
        ],
        "{table:#?}"
    );
    assert_eq!(
        cells[3][1..6],
        [
            "reclaimable",
            "1073741824",
            "false",
            "3d4h",
            "dead-pid,too-old"
        ]
    );
    let starts = field_starts(&table[0]);
    for l in &table {
        assert_eq!(field_starts(l), starts, "misaligned: {table:#?}");
    }
    let bare = lines(&run(&["clean", "--dry-run", "--noheadings", s(d)]));
    assert_eq!(bare.len(), 3, "{bare:#?}");
    assert!(bare[0].starts_with("kept "), "{bare:#?}");
    assert!(d.join("c.jsonl.lock").exists(), "dry run removed a file");
    assert!(holder.release().success());
}

/// One JSON shape for a lock: `status --json`, `clean --json` and the
/// library's serialised `Inspection` and `SweepReport` carry the same
/// camelCase fields with the same values; each adds only its own.
#[test]
fn a_lock_has_one_json_shape_in_status_clean_and_the_library() {
    use serde_json::Value;
    use std::collections::BTreeSet;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let holder = Holder::start(&d.join("a.jsonl"), &["--label", "gw"]);
    write_reference_lock(&d.join("c.jsonl.lock"), 1 << 30, 60_000, None);
    let json_lines = |o: Output| -> Vec<Value> {
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        lines(&o)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let status = json_lines(run(&["status", "--json-lines", s(d)]));
    let clean = json_lines(run(&["clean", "--dry-run", "--json", s(d)]));
    let opts = session_lock::sweep::SweepOptions::new().with_remove(false);
    let swept = session_lock::sweep::sweep(d, &opts).unwrap();
    let lib_sweep: Vec<Value> = swept
        .locks
        .iter()
        .map(|r| serde_json::to_value(r).unwrap())
        .collect();
    let lib_inspect: Vec<Value> = ["a.jsonl", "c.jsonl"]
        .iter()
        .map(|t| {
            let i = session_lock::inspect(d.join(t), &session_lock::LockOptions::new())
                .unwrap()
                .unwrap();
            serde_json::to_value(&i).unwrap()
        })
        .collect();
    let keys = |v: &Value| -> BTreeSet<String> { v.as_object().unwrap().keys().cloned().collect() };
    let lock_keys: BTreeSet<String> = [
        "lockPath",
        "verdict",
        "reasons",
        "contents",
        "record",
        "witness",
        "pidAlive",
        "ageMs",
        "fileAgeMs",
    ]
    .map(String::from)
    .into();
    let plus = |extra: &[&str]| -> BTreeSet<String> {
        lock_keys
            .iter()
            .cloned()
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };
    for i in 0..2 {
        assert_eq!(keys(&lib_inspect[i]), lock_keys, "{}", lib_inspect[i]);
        assert_eq!(
            keys(&status[i]),
            plus(&["attention", "holders", "waiters", "command"]),
            "{}",
            status[i]
        );
        assert_eq!(
            keys(&clean[i]),
            plus(&["action", "removed", "error"]),
            "{}",
            clean[i]
        );
        assert_eq!(
            keys(&lib_sweep[i]),
            plus(&["removed", "error"]),
            "{}",
            lib_sweep[i]
        );
        for k in [
            "lockPath", "verdict", "reasons", "contents", "record", "witness", "pidAlive",
        ] {
            for (name, v) in [
                ("status", &status[i]),
                ("clean", &clean[i]),
                ("sweep", &lib_sweep[i]),
            ] {
                assert_eq!(
                    v[k], lib_inspect[i][k],
                    "{name} {k}: {v} vs {}",
                    lib_inspect[i]
                );
            }
        }
    }
    assert_eq!(status[0]["record"]["label"], "gw");
    assert_eq!(status[1]["verdict"], "reclaimable");
    assert_eq!(clean[1]["action"], "would-remove");
    assert_eq!(lib_sweep[1]["removed"], false);
    // An absent lock: the same two fields everywhere it can occur.
    let absent = json_lines(run(&["status", "--json-lines", s(&d.join("zz.jsonl"))]));
    assert_eq!(absent[0]["verdict"], "absent");
    assert_eq!(
        keys(&absent[0]),
        ["attention", "lockPath", "verdict", "waiters"]
            .map(String::from)
            .into()
    );
    assert!(holder.release().success());
}

/// `status | head`: a closed stdout ends status and clean quietly (141, as
/// SIGPIPE would), not with a panic and a backtrace.
#[test]
fn status_and_clean_end_quietly_on_a_closed_pipe() {
    use std::os::fd::FromRawFd;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.jsonl.lock"), b"").unwrap();
    for args in [
        vec!["status", s(dir.path())],
        vec!["clean", "--dry-run", "--json", s(dir.path())],
    ] {
        let mut fds = [0; 2];
        // SAFETY: fds is a valid array of two ints.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both descriptors were just created and are owned here.
        let (read, write) = unsafe {
            (
                std::fs::File::from_raw_fd(fds[0]),
                std::fs::File::from_raw_fd(fds[1]),
            )
        };
        drop(read); // every write to the pipe now fails with EPIPE
        let child = bin()
            .args(&args)
            .stdin(Stdio::null())
            .stdout(write)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = within(WAIT, "session-lock", move || {
            child.wait_with_output().unwrap()
        });
        assert_eq!(out.status.code(), Some(141), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{args:?}");
    }
}

/// flock(1) habits that do not apply: one line each saying so and what to
/// do instead (exit 2), never clap's generic `-- -x` tip; and the duration
/// spellings for "no deadline" and "no max hold".
#[test]
fn flock_options_we_refuse_and_duration_spellings() {
    let dir = tempfile::tempdir().unwrap();
    let t = "s.jsonl";
    // (arguments, exit code, stdout, pieces of stderr, a piece that must not be there)
    let table: &[(&[&str], i32, &str, &[&str])] = &[
        (
            &["exec", "-s", t, "true"],
            2,
            "",
            &["-s/--shared is not supported", "drop -s"],
        ),
        (
            &["exec", "--shared", t, "true"],
            2,
            "",
            &["-s/--shared is not supported"],
        ),
        (&["exec", "-x", t, "true"], 2, "", &["always exclusive"]),
        (&["exec", "-e", t, "true"], 2, "", &["always exclusive"]),
        (&["exec", t, "-x", "true"], 2, "", &["always exclusive"]),
        (
            &["exec", "-o", t, "true"],
            2,
            "",
            &["-o/--close is not supported"],
        ),
        (
            &["exec", "-u", t, "true"],
            2,
            "",
            &["-u/--unlock is not supported"],
        ),
        (
            &["exec", "-s", "-u", t, "true"],
            2,
            "",
            &["-s/--shared", "-u/--unlock"],
        ),
        (
            &["exec", "9"],
            2,
            "",
            &["fd mode (flock FD) is not supported"],
        ),
        (&["exec", "-w", "-1", t, "true"], 2, "", &["negative"]),
        (
            &["exec", "--max-hold", "-5", t, "true"],
            2,
            "",
            &["negative"],
        ),
        (
            &["exec", "--kill-after", "-1", t, "true"],
            2,
            "",
            &["negative"],
        ),
        (&["append", "-w", "-1", t, "x"], 2, "", &["negative"]),
        (
            &["exec", "--max-hold", "0", t, "true"],
            2,
            "",
            &["say `off`"],
        ),
        (&["exec", "-w", "forever", t, "printf", "ok"], 0, "ok", &[]),
        (
            &["exec", "-w", "inf", "--max-hold", "off", t, "printf", "ok"],
            0,
            "ok",
            &[],
        ),
        (&["append", "-w", "forever", t, "line"], 0, "", &[]),
    ];
    let mut fails = Vec::new();
    for (args, code, out, pieces) in table {
        let o = run_in(dir.path(), args);
        let err = stderr(&o);
        let ok = o.status.code() == Some(*code)
            && stdout(&o) == *out
            && pieces.iter().all(|p| err.contains(p))
            && !err.contains("'-- -")
            && (*code != 2
                || err.lines().count() <= pieces.len().max(1)
                || err.starts_with("error:"));
        if !ok {
            fails.push(format!(
                "{args:?}: want {code} {out:?} stderr ~ {pieces:?}; got {:?} {:?} stderr {err:?}",
                o.status.code(),
                stdout(&o),
            ));
        }
    }
    assert!(fails.is_empty(), "{}", fails.join("\n"));
}

/// Log lines carry colour only on a terminal with `NO_COLOR` unset: never
/// into a pipe or file, never with `NO_COLOR` on a pty.
#[test]
fn no_escape_bytes_in_pipes_and_no_colour_with_no_color_on_a_pty() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = d.join("s.jsonl");
    // A dead holder's lock: taking it over logs an INFO line.
    let dead_lock = || {
        write_reference_lock(&lock_of(&t), dead_pid(), 1_000, None);
    };
    dead_lock();
    let o = bin()
        .env("SESSION_LOCK_LOG", "info")
        .args(["append", "--verbose", s(&t), "x"])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("reclaimed stale session lock"),
        "no log line: {err:?}"
    );
    assert!(
        err.contains("took over the lock of pid"),
        "--verbose said no takeover: {err:?}"
    );
    assert!(
        !o.stderr.contains(&0x1b) && !o.stdout.contains(&0x1b),
        "an escape byte in a pipe: {err:?}"
    );
    // On a pty: colour unless NO_COLOR is set.
    for (no_color, want_escape) in [(Some("1"), false), (None, true)] {
        dead_lock();
        let mut c = bin();
        c.env("SESSION_LOCK_LOG", "info")
            .env_remove("NO_COLOR")
            .envs(no_color.map(|v| ("NO_COLOR", v)))
            .args(["append", s(&t), "y"]);
        let captured = on_pty(c);
        assert!(
            captured.contains("reclaimed stale session lock"),
            "no log line on the pty: {captured:?}"
        );
        assert_eq!(
            captured.contains('\x1b'),
            want_escape,
            "NO_COLOR={no_color:?}: {captured:?}"
        );
    }
}

/// Run `cmd` with stdout and stderr on a new pseudo-terminal; what it wrote.
fn on_pty(mut cmd: std::process::Command) -> String {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    let (mut m, mut sl) = (-1, -1);
    // SAFETY: openpty writes two descriptors we then own.
    let rc = unsafe {
        libc::openpty(
            &mut m,
            &mut sl,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: fresh descriptors from openpty, owned once each.
    let (mut master, slave) = unsafe {
        (
            std::fs::File::from_raw_fd(m),
            std::fs::File::from_raw_fd(sl),
        )
    };
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap())
        .spawn()
        .unwrap();
    drop(slave);
    // The command keeps its copies of the slave until it is dropped.
    drop(cmd);
    wait_child(&mut child, WAIT, "command on a pty");
    // The child has exited and the slave is closed: read until EIO.
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `status` as `lslocks`: `-o` picks columns (any case, `+` appends),
/// `-n`/`--noheadings`, `-p PID` filters, `-J` is one JSON document and
/// `--json-lines` one object per line.
#[test]
fn status_columns_pid_filter_and_json_document() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let holder = Holder::start(&d.join("a.jsonl"), &["--label", "gw"]);
    write_reference_lock(&d.join("c.jsonl.lock"), 1 << 30, 60_000, None);
    let pid = holder.pid().to_string();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned();
    let a = format!("{}/a.jsonl.lock", s(d));
    let c = format!("{}/c.jsonl.lock", s(d));
    // (arguments, the table's lines as whitespace-separated cells)
    let table: Vec<(Vec<&str>, Vec<Vec<&str>>)> = vec![
        (
            vec!["status", "-o", "pid,alive,label,host,path", s(d)],
            vec![
                vec!["PID", "ALIVE", "LABEL", "HOST", "PATH"],
                vec![&pid, "true", "gw", &host, &a],
                vec!["1073741824", "false", "-", "-", &c],
            ],
        ),
        (
            vec!["status", "-n", "-o", "PATH,verdict", s(d)],
            vec![vec!["held", &a], vec!["reclaimable", &c]],
        ),
        (
            vec![
                "status",
                "--noheadings",
                "-o",
                "holders,waiters,command",
                "-p",
                &pid,
                s(d),
            ],
            vec![vec![&pid, "0", "session-lock-te"]],
        ),
        (
            vec!["status", "-p", "1073741824", "-o", "verdict", "-n", s(d)],
            vec![vec!["reclaimable"]],
        ),
        (
            vec!["status", "-n", "-o", "+label", &a],
            vec![vec!["held", &pid, "true"]],
        ),
    ];
    let mut fails = Vec::new();
    for (args, want) in &table {
        let o = run(args);
        let got: Vec<Vec<String>> = lines(&o)
            .iter()
            .map(|l| l.split_whitespace().map(String::from).collect())
            .collect();
        let matches = got.len() == want.len()
            && got.iter().zip(want).all(|(g, w)| {
                // A want row may be a prefix of the line's cells.
                g.len() >= w.len() && g.iter().zip(w).all(|(a, b)| a == b)
            });
        if !o.status.success() || !matches {
            fails.push(format!(
                "{args:?}: want {want:?}, got {got:?} (stderr {:?})",
                stderr(&o)
            ));
        }
    }
    let o = run(&["status", "-o", "owner", s(d)]);
    if o.status.code() != Some(2) || !stderr(&o).contains("unknown column \"owner\"") {
        fails.push(format!("-o owner: {:?} {:?}", o.status.code(), stderr(&o)));
    }
    assert!(fails.is_empty(), "{}", fails.join("\n"));
    // -J: one document, {"locks": [...]}, pretty-printed over many lines.
    let o = run(&["status", "-J", s(d)]);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON document");
    let locks = doc["locks"].as_array().expect("locks array");
    assert_eq!(locks.len(), 2, "{doc}");
    assert_eq!(locks[0]["record"]["label"], "gw");
    assert_eq!(locks[0]["holders"], serde_json::json!([holder.pid()]));
    assert_eq!(locks[1]["pidAlive"], false);
    // --json-lines: one object a line, the same objects.
    let o = run(&["status", "--json-lines", s(d)]);
    let objs: Vec<serde_json::Value> = lines(&o)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objs.len(), 2);
    assert_eq!(objs[0]["lockPath"], locks[0]["lockPath"]);
    let o = run(&["status", "-J", "--json-lines", s(d)]);
    assert_eq!(o.status.code(), Some(2), "-J with --json-lines");
    // A setting the etcd backend cannot honour is an error, not ignored
    // (refused before any connection is tried).
    for args in [&["-o", "pid"][..], &["-p", "1"][..]] {
        let o = bin()
            .args(["--backend", "etcd://127.0.0.1:1", "status"])
            .args(args)
            .output()
            .unwrap();
        if cfg!(feature = "etcd") {
            assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
            assert!(stderr(&o).contains("apply to lock files"), "{}", stderr(&o));
        }
    }
    assert!(holder.release().success());
}

/// Completions and man pages come from the clap definition; the etcd-only
/// options sit under "Backend options" and only where a lock is taken.
#[test]
fn completions_man_pages_and_backend_options_where_they_apply() {
    for (shell, piece) in [
        ("bash", "complete -F _session__lock"),
        ("zsh", "#compdef session-lock"),
        ("fish", "complete -c session-lock"),
    ] {
        let o = run(&["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let text = stdout(&o);
        assert!(text.contains(piece), "{shell}: no {piece:?} in {text}");
        assert!(
            text.contains("exec") && text.contains("max-hold"),
            "{shell}: {text}"
        );
    }
    let o = run(&["completions", "tcsh"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
    let o = run(&["man"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let page = stdout(&o);
    assert!(
        page.starts_with(".ie") && page.contains(".TH session-lock 1"),
        "{page}"
    );
    let dir = tempfile::tempdir().unwrap();
    let o = run(&["man", "--dir", s(dir.path())]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut pages = names(dir.path());
    pages.sort();
    assert!(
        pages.contains(&"session-lock.1".to_owned())
            && pages.contains(&"session-lock-exec.1".to_owned())
            && !pages.iter().any(|p| p.contains("help")),
        "{pages:?}"
    );
    let help = |sub: &str| stdout(&run(&[sub, "--help"]));
    for sub in ["exec", "append"] {
        let h = help(sub);
        let backend = h
            .find("Backend options:")
            .unwrap_or_else(|| panic!("{sub}: {h}"));
        assert!(
            h[backend..].contains("--lease-ttl") && h[backend..].contains("--key"),
            "{sub}: {h}"
        );
    }
    for sub in ["status", "clean", "completions", "man"] {
        let h = help(sub);
        assert!(
            !h.contains("--lease-ttl") && !h.contains("--key"),
            "{sub}: {h}"
        );
    }
}

/// One rule for paths: every line names the lock as the user named the
/// transcript (relative here), the library's errors included.
#[test]
fn paths_are_printed_as_given_in_every_message() {
    let dir = tempfile::tempdir().unwrap();
    let holder = Holder::start(&dir.path().join("s.jsonl"), &[]);
    let abs = s(dir.path()).to_owned();
    for args in [
        &["exec", "-n", "s.jsonl", "true"][..],
        &["exec", "-w", "1.2", "s.jsonl", "true"][..],
        &["append", "-w", "0.2", "s.jsonl", "x"][..],
        &["status", "s.jsonl"][..],
    ] {
        let o = run_in(dir.path(), args);
        let all = format!("{}{}", stdout(&o), stderr(&o));
        assert!(all.contains("s.jsonl"), "{args:?}: {all}");
        assert!(
            !all.contains(&abs),
            "{args:?} printed an absolute path: {all}"
        );
    }
    assert!(holder.release().success());
}
