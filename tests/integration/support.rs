//! What several tests run: a task that waits on the PZ-1 upstream and then
//! does PZ-1's CPU step, so tests get real waits and real CPU work without
//! any server to set up.

use switchyard::io_reactor::EgressConfig;
use switchyard::{Engine, EngineBuilder, TaskContext, TaskError};

/// `Engine::builder()` with the egress policy allowing loopback: every
/// upstream these tests talk to runs on this machine, and the policy
/// refuses loopback by default.
pub(crate) fn engine_allowing_loopback() -> EngineBuilder {
    Engine::builder().egress(EgressConfig::allowing_loopback())
}

/// GET `url` (a PZ-1 poll), then transform and fingerprint what came back
/// on the CPU side with `rounds` SHA-256 rounds per item.
pub(crate) async fn fetch_and_digest(cx: TaskContext, url: String, rounds: u32) -> Result<(), TaskError> {
    let response = cx.http().get(&url).await?.error_for_status()?;
    cx.cpu_stage("digest", move || switchyard_pz1::transform_poll(&response.body, rounds)).await??;
    Ok(())
}

/// A PZ-1 poll URL on the upstream at `base`: `items` events after `delay_ms`.
pub(crate) fn poll_url(base: &str, items: u64, delay_ms: u64) -> String {
    format!("{base}/poll/z1?seq=1&n={items}&fresh=2&delay_ms={delay_ms}")
}

/// A Redis server of a test's own, on a free loopback port, persisting every
/// write (append-only file, fsync always) so a restart keeps what it had.
pub(crate) struct LocalRedis {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl LocalRedis {
    /// Starts one, or returns `None` (after saying why) when `redis-server`
    /// is not installed and services are not required.
    pub(crate) fn start() -> Option<LocalRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let dir = std::env::temp_dir().join(switchyard_tests::unique("switchyard-redis"));
        std::fs::create_dir_all(&dir).ok()?;
        let mut redis = LocalRedis { port, dir, child: None };
        match redis.spawn() {
            Ok(()) => Some(redis),
            Err(e) if !switchyard_tests::services_required() => {
                eprintln!("skipping: cannot start redis-server ({e})");
                None
            }
            Err(e) => panic!("redis-server is required (SWITCHYARD_REQUIRE_SERVICES=1): {e}"),
        }
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if std::time::Instant::now() > deadline {
                return Err(std::io::Error::other("redis-server did not start"));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(())
    }

    /// Its URL.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills it (SIGKILL: no shutdown save) and starts it again on the same
    /// port and data.
    pub(crate) fn restart(&mut self) {
        self.restart_after(std::time::Duration::from_millis(300), true);
    }

    /// Kills it, leaves it down for `down`, and starts it again on the same
    /// port, with its data if `keep_data`, else with nothing: what a Redis
    /// without persistence (or one that lost its disk) comes back as.
    pub(crate) fn restart_after(&mut self, down: std::time::Duration, keep_data: bool) {
        self.kill();
        if !keep_data {
            let _ = std::fs::remove_dir_all(&self.dir);
            std::fs::create_dir_all(&self.dir).expect("a fresh data directory");
        }
        std::thread::sleep(down);
        self.spawn().expect("redis-server restarts");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
