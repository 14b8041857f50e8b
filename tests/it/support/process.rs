//! The real `webhooker` binary as a child process, for crash and resource tests.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server process; killed (SIGKILL) when dropped.
pub struct ServerProcess {
    pub child: Child,
    pub base: String,
    pub port: u16,
    /// Every line it wrote to stdout (its JSON log, as stdout is not a terminal).
    pub output: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

pub const PASSWORD: &str = "process test password";

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl ServerProcess {
    /// Starts the binary on `data_dir` and a free loopback port; waits until it listens.
    pub fn start(data_dir: &Path, port: Option<u16>) -> ServerProcess {
        ServerProcess::start_with(data_dir, port, &[])
    }

    /// Like [`start`](Self::start), with extra environment variables.
    pub fn start_with(data_dir: &Path, port: Option<u16>, env: &[(&str, &str)]) -> ServerProcess {
        let port = port.unwrap_or_else(free_port);
        let mut child = Command::new(env!("CARGO_BIN_EXE_webhooker"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATA_DIR", data_dir)
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .env("WEBHOOKER_ADMIN_PASSWORD", PASSWORD)
            .env("ALLOWED_TARGET_NETWORKS", "127.0.0.0/8")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn webhooker binary");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if std::env::var("IT_SERVER_LOG").is_ok() {
                    eprintln!("server: {line}");
                }
                if line.contains("listening on") {
                    let _ = tx.send(());
                }
                kept.lock().unwrap().push(line);
            }
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("server did not start listening");
        ServerProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
            port,
            output,
        }
    }

    /// An API call as `admin` (with `body` as JSON, if any); its JSON answer.
    pub async fn api_json(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let mut request = http
            .request(method, format!("{}/api/v1{path}", self.base))
            .basic_auth("admin", Some(PASSWORD));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let r = request.send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// How many lines of its output contain `text`.
    pub fn output_lines_with(&self, text: &str) -> usize {
        self.output
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(text))
            .count()
    }

    /// SIGTERM, then waits for it to exit (a clean shutdown closes every file).
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Thread count from /proc.
    pub fn threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Thread names from /proc, sorted.
    pub fn thread_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", self.pid()))
            .map(|d| {
                d.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                    .map(|n| n.trim().to_string())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Resident memory in KiB from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Waits until `f` holds or the deadline passes.
    pub fn wait(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        f()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What an admin command printed, and how it exited.
pub struct CommandOutput {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// Runs `webhooker <args>` on `data_dir` (and `PORT`, for `healthcheck`) with `stdin` as
/// its input; bounded by a deadline.
pub fn run_command(data_dir: &Path, port: u16, args: &[&str], stdin: &[u8]) -> CommandOutput {
    run_command_in(
        None,
        &[
            ("DATA_DIR", &data_dir.to_string_lossy()),
            ("PORT", &port.to_string()),
        ],
        args,
        stdin,
    )
}

/// Runs `webhooker <args>` with only `env` (and `PATH`) as its environment, in `cwd` if
/// given, with `stdin` as its input; bounded by a deadline.
pub fn run_command_in(
    cwd: Option<&Path>,
    env: &[(&str, &str)],
    args: &[&str],
    stdin: &[u8],
) -> CommandOutput {
    use std::io::Write;
    let mut command = Command::new(env!("CARGO_BIN_EXE_webhooker"));
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    let mut child = command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn webhooker binary");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("command did not finish within 60 s")
        .unwrap();
    writer.join().unwrap();
    CommandOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
