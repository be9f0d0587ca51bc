//! Starting a benchmarked program as its own process: locating (and optionally building)
//! the workspace's release binaries, waiting for a ready line on stdout, stopping it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::BenchError;

/// The workspace root (where the root `Cargo.toml` is).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The cargo target directory: `$CARGO_TARGET_DIR` or `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Path of a release binary of the workspace, `<target>/release/<name>`.
pub fn release_binary(name: &str) -> PathBuf {
    target_dir().join("release").join(name)
}

/// Runs `cargo build --release -p <package>` in the workspace (a quick no-op when the binary
/// is up to date) and returns the path of binary `bin`.
pub fn build_release_binary(package: &str, bin: &str) -> Result<PathBuf, BenchError> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(&cargo)
        .args(["build", "--release", "-p", package, "--bin", bin])
        .current_dir(workspace_root())
        .stdout(Stdio::null())
        .status()
        .map_err(|e| BenchError::Spawn {
            program: cargo.clone(),
            detail: format!("cannot run cargo build --release -p {package}: {e}"),
        })?;
    if !status.success() {
        return Err(BenchError::Spawn {
            program: cargo,
            detail: format!("cargo build --release -p {package} failed ({status})"),
        });
    }
    let path = release_binary(bin);
    if path.is_file() {
        Ok(path)
    } else {
        Err(BenchError::Spawn {
            program: path.display().to_string(),
            detail: "cargo build succeeded but the binary is not there (is CARGO_TARGET_DIR set differently for cargo?)".into(),
        })
    }
}

/// What to start.
#[derive(Debug, Clone, Default)]
pub struct SpawnSpec {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Where its stderr (and any stdout after the ready line) goes; `None` discards it.
    pub log: Option<PathBuf>,
}

/// A running child process, killed when dropped.
#[derive(Debug)]
pub struct ChildProcess {
    child: Child,
    program: String,
    pid: u32,
}

impl ChildProcess {
    /// Starts the process and waits until it prints a stdout line starting with
    /// `ready_prefix`; returns the process and the rest of that line (trimmed).
    pub async fn spawn(
        spec: &SpawnSpec,
        ready_prefix: &str,
        timeout: Duration,
    ) -> Result<(Self, String), BenchError> {
        let program = spec.program.display().to_string();
        let err = |detail: String| BenchError::Spawn {
            program: program.clone(),
            detail,
        };
        let stderr = match &spec.log {
            Some(p) => {
                if let Some(dir) = p.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
                }
                Stdio::from(
                    std::fs::File::create(p)
                        .map_err(|e| err(format!("cannot create log {}: {e}", p.display())))?,
                )
            }
            None => Stdio::null(),
        };
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| err(format!("cannot start: {e}")))?;
        let pid = child
            .id()
            .ok_or_else(|| err("exited before its pid could be read".into()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| err("stdout is not piped".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        let wait_ready = async {
            loop {
                match lines.next_line().await {
                    Ok(Some(line)) => {
                        if let Some(rest) = line.strip_prefix(ready_prefix) {
                            return Ok(rest.trim().to_string());
                        }
                    }
                    Ok(None) => return Err(err("closed stdout before its ready line".into())),
                    Err(e) => return Err(err(format!("cannot read stdout: {e}"))),
                }
            }
        };
        let rest = match tokio::time::timeout(timeout, wait_ready).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(BenchError::NotReady {
                    program,
                    prefix: ready_prefix.to_string(),
                    seconds: timeout.as_secs(),
                });
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok((
            Self {
                child,
                program,
                pid,
            },
            rest,
        ))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Asks the process to stop with SIGTERM, waits up to `grace`, then kills it. Returns its
    /// exit code (`None` when it was killed or ended by a signal).
    pub async fn stop(mut self, grace: Duration) -> Result<Option<i32>, BenchError> {
        let term = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        if term.is_ok_and(|s| s.success())
            && let Ok(Ok(status)) = tokio::time::timeout(grace, self.child.wait()).await
        {
            return Ok(status.code());
        }
        self.child.kill().await.map_err(|e| BenchError::Spawn {
            program: self.program.clone(),
            detail: format!("cannot kill pid {}: {e}", self.pid),
        })?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_point_into_the_workspace() {
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert!(release_binary("devcluster").ends_with("release/devcluster"));
    }

    #[tokio::test]
    async fn waits_for_the_ready_line_and_stops() {
        let spec = SpawnSpec {
            program: "sh".into(),
            args: vec![
                "-c".into(),
                "echo starting; echo 'ready 127.0.0.1:1234'; exec sleep 60".into(),
            ],
            ..SpawnSpec::default()
        };
        let (mut p, rest) = ChildProcess::spawn(&spec, "ready ", Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(rest, "127.0.0.1:1234");
        assert!(p.pid() > 0);
        assert!(p.is_running());
        assert_eq!(p.stop(Duration::from_secs(30)).await.unwrap(), None);
    }

    #[tokio::test]
    async fn reports_a_process_that_never_gets_ready() {
        let spec = SpawnSpec {
            program: "sh".into(),
            args: vec!["-c".into(), "echo nope".into()],
            ..SpawnSpec::default()
        };
        let e = ChildProcess::spawn(&spec, "ready ", Duration::from_secs(30))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("closed stdout"), "{e}");
    }
}
