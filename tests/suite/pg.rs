//! A real PostgreSQL (Debian's `postgresql-15`, found through `EPITAPH_PG_BIN`, which
//! `scripts/test.sh` sets) for the store tests: a throwaway cluster in a temporary folder on
//! loopback, trust authentication, durability off (`fsync`, `synchronous_commit`) — a test
//! cluster, not a tuned one. One cluster per test binary, one database per test.
//!
//! The server cannot outlive the tests: it runs under a small shell that holds the read end
//! of a pipe whose write end only this process has; when this process exits — normally,
//! panicking, or killed — the pipe closes, and the shell stops the server (fast shutdown).
//! As root (CI containers), the cluster runs as the `postgres` user: PostgreSQL refuses root.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::common;

/// Longest the cluster may take to initialise and accept connections.
const START_BOUND: Duration = Duration::from_secs(120);
/// The line the server logs once it accepts connections.
const READY: &str = "database system is ready to accept connections";
/// How many ports are tried when one is taken between picking and binding it.
const PORT_ATTEMPTS: usize = 5;

pub struct Postgres {
    port: u16,
    bin: PathBuf,
    /// Keeps the temporary folder (data, socket, log) until the process ends.
    _dir: tempfile::TempDir,
    /// The shell supervising the server, and the pipe whose closing stops it.
    _guard: Mutex<(Child, ChildStdin)>,
    /// Names of the databases handed out.
    next_db: AtomicU32,
}

/// The cluster shared by this test binary, started on first use.
pub fn postgres() -> &'static Postgres {
    static PG: OnceLock<Postgres> = OnceLock::new();
    PG.get_or_init(Postgres::start)
}

fn bin_dir() -> PathBuf {
    let dir = std::env::var_os("EPITAPH_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"));
    assert!(
        dir.join("postgres").exists(),
        "{}/postgres not found: install Debian's postgresql (scripts/test.sh does) or set EPITAPH_PG_BIN",
        dir.display()
    );
    dir
}

/// The uid and gid of the `postgres` user when running as root (PostgreSQL refuses to run as
/// root); None otherwise.
fn run_as() -> Option<(u32, u32)> {
    let id = |args: &[&str]| -> u32 {
        let out = Command::new("id").args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    if id(&["-u"]) != 0 {
        return None;
    }
    Some((id(&["-u", "postgres"]), id(&["-g", "postgres"])))
}

fn as_user(cmd: &mut Command, user: Option<(u32, u32)>) -> &mut Command {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

impl Postgres {
    fn start() -> Postgres {
        let bin = bin_dir();
        let user = run_as();
        let dir = tempfile::tempdir().unwrap();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let data = dir.path().join("data");
        let out = as_user(&mut Command::new(bin.join("initdb")), user)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "epitaph",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for attempt in 0..PORT_ATTEMPTS {
            let port = common::free_port();
            let log = dir.path().join(format!("server-{attempt}.log"));
            if let Some(guard) = Self::serve(&bin, user, dir.path(), &data, port, &log) {
                return Postgres {
                    port,
                    bin,
                    _dir: dir,
                    _guard: Mutex::new(guard),
                    next_db: AtomicU32::new(0),
                };
            }
        }
        panic!("PostgreSQL did not start on any of {PORT_ATTEMPTS} ports");
    }

    /// Starts the server on `port`; None when it exited (the port was taken meanwhile).
    /// The supervising shell is returned unwaited on purpose: it lives as long as this test
    /// process, and exits (stopping the server) when the process does.
    #[allow(clippy::zombie_processes)]
    fn serve(
        bin: &Path,
        user: Option<(u32, u32)>,
        dir: &Path,
        data: &Path,
        port: u16,
        log: &Path,
    ) -> Option<(Child, ChildStdin)> {
        // `read` returns when our end of its stdin closes (this process is gone); then a fast
        // shutdown. The server itself reads nothing.
        let script = r#"
"$1/postgres" -D "$2" -p "$3" -k "$4" -c listen_addresses=127.0.0.1 \
  -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
  -c max_connections=200 </dev/null >"$5" 2>&1 &
pid=$!
read _ignored
kill -INT "$pid" 2>/dev/null
wait "$pid"
"#;
        let mut child = as_user(&mut Command::new("sh"), user)
            .args(["-c", script, "sh"])
            .arg(bin)
            .arg(data)
            .arg(port.to_string())
            .arg(dir)
            .arg(log)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let until = Instant::now() + START_BOUND;
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.contains(READY) {
                return Some((child, stdin));
            }
            if text.contains("could not bind")
                || text.contains("could not create any TCP/IP sockets")
            {
                let mut stdin = stdin;
                let _ = stdin.write_all(b"\n");
                drop(stdin);
                let _ = common::wait_timeout(&mut child, START_BOUND);
                return None;
            }
            assert!(
                Instant::now() < until,
                "PostgreSQL not ready after {START_BOUND:?}; its log:\n{text}"
            );
            std::thread::sleep(common::POLL_INTERVAL);
        }
    }

    /// A new, empty database; its URL.
    pub fn database(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            self.next_db.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new(self.bin.join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "epitaph",
            ])
            .arg(&name)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "createdb {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(&name)
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://epitaph@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs one SQL statement with `psql`; its unaligned, tuples-only output.
    pub fn psql(&self, url: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                url,
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}
