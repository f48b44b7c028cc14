//! The benchmark harness itself works: a small fan-out, a small idle run and a small
//! recovery storm against every server complete, every delivery arrives, and the tables are
//! printed. (Figures are not
//! asserted: speed is what BENCHMARKS.md reports, not what a test checks.)

use std::process::Command;

fn bench(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tidings-bench"))
        .args(args)
        .output()
        .expect("run tidings-bench");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{args:?} failed:\n{stdout}\n{stderr}");
    stdout
}

/// The table row of `server`, split into cells.
fn row<'a>(table: &'a str, server: &str) -> Vec<&'a str> {
    let line = table
        .lines()
        .find(|l| l.starts_with(&format!("| {server} |")))
        .unwrap_or_else(|| panic!("no row for {server} in:\n{table}"));
    line.split('|').map(str::trim).collect()
}

#[test]
fn fanout_delivers_everything_on_every_server_open_loop_windowed_and_with_the_same_frames() {
    let small = [
        "fanout",
        "--runs",
        "1",
        "--subscribers",
        "20",
        "--messages",
        "50",
    ];
    for extra in [&[][..], &["--window", "8"][..], &["--same-frames"][..]] {
        let out = bench(&[&small[..], extra].concat());
        for server in ["tokio", "bare", "smol", "async-std", "tidings-tokio"] {
            let cells = row(&out, server);
            assert_eq!(cells[7], "1 of 1 runs", "{server} lost deliveries:\n{out}");
        }
        // Bytes per delivery: the baselines deliver the bare payload (about 100 bytes
        // less), or with --same-frames the frame tidings delivers. Its epoch is random,
        // of 10 to 16 digits (most often 16), where the baselines' copies carry 16: tidings'
        // own frames can be up to 6 bytes shorter.
        let bytes = |server| -> i64 {
            let cell = row(&out, server)[11];
            let median = cell.split_whitespace().next().unwrap_or_default();
            median
                .parse()
                .unwrap_or_else(|_| panic!("bytes of {server}: {cell}"))
        };
        let gap = (bytes("tokio") - bytes("smol")).abs();
        if extra == ["--same-frames"] {
            assert!(gap <= 6, "the same frames, {gap} bytes apart:\n{out}");
        } else {
            assert!(
                gap >= 50,
                "the bare payload, only {gap} bytes apart:\n{out}"
            );
        }
        for baseline in ["tokio", "bare"] {
            let table = out
                .split(&format!("Against the {baseline} baseline"))
                .nth(1)
                .unwrap_or_else(|| panic!("no ratios to {baseline}:\n{out}"));
            assert!(row(table, "smol")[2].ends_with('×'), "{table}");
        }
    }
}

#[test]
fn fanout_writes_every_delivery_where_asked() {
    let dir = std::env::temp_dir().join(format!("tidings-bench-deliveries-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory for the deliveries");
    let dir_arg = dir.to_str().expect("a UTF-8 temporary directory");
    let out = bench(&[
        "fanout",
        "--runs",
        "1",
        "--servers",
        "tokio,smol",
        "--subscribers",
        "10",
        "--messages",
        "30",
        "--deliveries",
        dir_arg,
    ]);
    for server in ["tokio", "smol"] {
        let text = std::fs::read_to_string(dir.join(format!("{server}-0.txt")))
            .unwrap_or_else(|e| panic!("{server}'s deliveries: {e}"));
        let mut seen = std::collections::BTreeSet::new();
        for line in text.lines() {
            let cells: Vec<u64> = line
                .split(' ')
                .map(|c| c.parse().unwrap_or_else(|_| panic!("{server}: {line:?}")))
                .collect();
            assert_eq!(cells.len(), 3, "{server}: {line:?}");
            assert!(cells[0] < 30 && cells[1] < 10, "{server}: {line:?}");
            assert!(
                seen.insert((cells[0], cells[1])),
                "{server} twice: {line:?}"
            );
        }
        assert_eq!(
            seen.len(),
            300,
            "{server}: every publish to every subscriber, once"
        );
    }
    let table = out
        .split("Publish by publish")
        .nth(1)
        .unwrap_or_else(|| panic!("no publish-by-publish table:\n{out}"));
    for server in ["tokio", "smol"] {
        let late = row(table, server)[2];
        assert!(
            late.ends_with(')'),
            "{server}'s late publishes: {late:?}\n{out}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn idle_opens_every_connection_from_several_addresses() {
    let out = bench(&[
        "idle",
        "--runs",
        "1",
        "--connections",
        "60",
        "--sources",
        "3",
        "--settle",
        "0",
        "--hold",
        "0",
    ]);
    for server in ["tokio", "bare", "smol", "async-std", "tidings-tokio"] {
        let cells = row(&out, server);
        assert_eq!(cells[2], "60 (60–60)", "{server} did not open all:\n{out}");
    }
}

#[test]
fn recovery_brings_every_client_back_with_all_it_missed() {
    let out = bench(&[
        "recovery",
        "--runs",
        "1",
        "--connections",
        "200",
        "--messages",
        "10",
        "--sources",
        "3",
    ]);
    for server in ["smol", "async-std", "tidings-tokio"] {
        let cells = row(&out, server);
        assert_eq!(
            (cells[2], cells[3], cells[4]),
            ("200 (200–200)", "200 (200–200)", "2000 (2000–2000)"),
            "{server}: back, recovered, replayed:
{out}"
        );
    }
    let baseline = Command::new(env!("CARGO_BIN_EXE_tidings-bench"))
        .args(["recovery", "--servers", "tokio"])
        .output()
        .expect("run tidings-bench");
    assert!(!baseline.status.success(), "a baseline has no recovery");
}

#[test]
fn a_bad_option_is_an_error_not_a_panic() {
    let out = Command::new(env!("CARGO_BIN_EXE_tidings-bench"))
        .args(["fanout", "--subscribers", "many"])
        .output()
        .expect("run tidings-bench");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tidings-bench:"));
    let help = bench(&["--help"]);
    assert!(help.contains("tidings-bench idle") && help.contains("--wrap"));
}

#[test]
fn fanout_through_two_nodes_over_redis_delivers_everything() {
    let installed = Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        assert!(
            std::env::var_os("TIDINGS_REQUIRE_REDIS").is_none(),
            "TIDINGS_REQUIRE_REDIS is set but redis-server is missing"
        );
        eprintln!("\n*** SKIPPED: install redis-server (Debian package) to run this test ***\n");
        return;
    }
    let out = bench(&[
        "fanout",
        "--servers",
        "smol-redis,smol-redis-idle,smol-redis-solo",
        "--runs",
        "1",
        "--subscribers",
        "20",
        "--messages",
        "50",
    ]);
    for server in ["smol-redis", "smol-redis-idle", "smol-redis-solo"] {
        assert_eq!(row(&out, server)[7], "1 of 1 runs", "{server}:\n{out}");
    }
    assert!(
        out.contains("smol-redis: of its server CPU, Redis's own"),
        "{out}"
    );
}
