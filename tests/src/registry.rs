//! A real OCI distribution registry for the OCI tests: Debian's
//! `docker-registry` (the CNCF distribution registry), started on a free
//! loopback port with its own config file and storage folder, and stopped
//! (killed) on drop. `scripts/test.sh` installs the package.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The registry binary: `WEIR_TEST_REGISTRY`, else `docker-registry` on
/// `PATH`.
pub fn registry_binary() -> PathBuf {
    std::env::var_os("WEIR_TEST_REGISTRY")
        .map_or_else(|| PathBuf::from("docker-registry"), PathBuf::from)
}

/// The user of [`Registry::start_with_basic_auth`].
pub const USER: &str = "weir";
/// Its password.
pub const PASSWORD: &str = "weir-secret";
/// Its `htpasswd` line (bcrypt, as the registry requires; made once with
/// libcrypt's `crypt_gensalt("$2a$", 5)`).
const HTPASSWD: &str = "weir:$2a$05$PqyZeigH3D1RaC26.TA3repUpxUTKpOFfRcpF6pzGF0N94rGJH69G";

/// A running (or stopped, and restartable on the same port and storage)
/// registry.
#[derive(Debug)]
pub struct Registry {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Registry {
    /// Starts a registry on a free loopback port with empty storage, and
    /// waits until it answers `/v2/`.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Like [`Registry::start`], requiring basic auth as [`USER`] with
    /// password [`PASSWORD`].
    pub fn start_with_basic_auth() -> Self {
        Self::start_with(Some(HTPASSWD))
    }

    fn start_with(htpasswd: Option<&str>) -> Self {
        let dir = tempfile::tempdir().expect("registry temp dir");
        let addr = crate::free_addr();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: {addr}\n",
            dir.path().join("storage").display()
        );
        if let Some(line) = htpasswd {
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, format!("{line}\n")).expect("write htpasswd");
            config += &format!(
                "auth:\n  htpasswd:\n    realm: weir-test\n    path: {}\n",
                file.display()
            );
        }
        std::fs::write(dir.path().join("config.yml"), config).expect("write registry config");
        let mut registry = Self {
            addr,
            dir,
            child: None,
        };
        registry.resume();
        registry
    }

    /// `host:port` of the registry.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The reference of `repository:tag` on this registry.
    pub fn reference(&self, repository_and_tag: &str) -> String {
        format!("{}/{repository_and_tag}", self.addr)
    }

    /// Whether the registry is running.
    pub fn is_up(&self) -> bool {
        self.child.is_some()
    }

    /// Stops the registry (SIGKILL): connections are refused until
    /// [`Registry::resume`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the registry again on the same port and storage, and waits
    /// until it answers.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "the registry is already running");
        let log = std::fs::File::create(self.dir.path().join("registry.log")).expect("log file");
        let child = Command::new(registry_binary())
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `{}` (apt-get install docker-registry, or set \
                     WEIR_TEST_REGISTRY): {e}",
                    registry_binary().display()
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((status, _, _)) = crate::http_get(self.addr, "/v2/")
                && (status == 200 || status == 401)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the registry did not answer on {}: {}",
                self.addr,
                std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Where the registry stores blob `digest` (`sha256:<hex>`): overwrite
    /// it to serve content that does not match its digest.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The storage folder.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The folder holding the config, storage and log.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}
