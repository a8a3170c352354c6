//! Modules from an OCI registry (Debian's `docker-registry` on loopback):
//! `weir push`, pull and run, a tag moved under traffic, a registry that
//! goes away, refused artifacts, and a restart served from the cache.

#![allow(clippy::print_stdout, reason = "tests print the figures they measure")]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use weir::config::RunConfig;
use weir::http::HttpListen;
use weir::oci::OciModule;
use weir::status::{ModuleState, ModuleStatus, StatusBoard};
use weir_tests::registry::{self, Registry};
use weir_tests::{
    Producer, Received, Send, Topics, Weir, broker, consume, digest, eventually, free_addr,
    http_get, init_logging, module_status, test_config, test_guest, wait_running, weir_binary,
};

use super::reload::version_runs;

/// How often weir asks the registry for the tag's digest in these tests.
const POLL: Duration = Duration::from_millis(500);

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// The `echo` fixture's topics, its manifest file, a registry, and the
/// cache folder weir pulls into.
struct Echo {
    t: Topics,
    registry: Registry,
    files: tempfile::TempDir,
    producer: Producer,
}

impl Echo {
    async fn new(prefix: &str) -> Self {
        Self::with(
            prefix,
            tokio::task::spawn_blocking(Registry::start).await.unwrap(),
        )
        .await
    }

    async fn with(prefix: &str, registry: Registry) -> Self {
        let t = Topics::create(prefix).await;
        let files = tempfile::tempdir().unwrap();
        std::fs::write(files.path().join("echo.toml"), t.manifest().to_string()).unwrap();
        let producer =
            Producer::connect(&broker().bootstrap(), &[("linger.ms".into(), "1".into())]);
        Self {
            t,
            registry,
            files,
            producer,
        }
    }

    /// The reference weir follows.
    fn latest(&self) -> String {
        self.registry.reference("weir/echo:latest")
    }

    /// `weir push target/test-guests/<guest>.wasm <reference> --manifest
    /// echo.toml`; returns the digest it printed.
    async fn push(&self, guest: &str, reference: &str) -> String {
        let out = self.push_with(guest, reference, &[]).await;
        assert!(
            out.status.success(),
            "weir push failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let digest = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        assert!(digest.starts_with("sha256:"), "{digest}");
        digest
    }

    /// `weir push` with `env` set, as it ran.
    async fn push_with(
        &self,
        guest: &str,
        reference: &str,
        env: &[(&str, &str)],
    ) -> std::process::Output {
        let manifest = self.files.path().join("echo.toml");
        let (guest, reference) = (test_guest(guest), reference.to_owned());
        let env: Vec<(String, String)> = (env.iter())
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(weir_binary())
                .arg("push")
                .arg(&guest)
                .arg(&reference)
                .arg("--manifest")
                .arg(&manifest)
                .envs(env)
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    }

    /// weir following `latest`, polling every [`POLL`], with its cache in
    /// this fixture's folder.
    fn config(&self, http: HttpListen) -> RunConfig {
        RunConfig {
            modules: None,
            oci: vec![OciModule {
                reference: self.latest(),
                name: Some("echo".into()),
                username: None,
                password_env: None,
                insecure: false,
            }],
            oci_poll_interval: POLL,
            oci_cache: Some(self.cache()),
            http_listen: http,
            ..test_config(self.files.path(), &[])
        }
    }

    fn cache(&self) -> PathBuf {
        self.files.path().join("oci-cache")
    }

    async fn start(&self, http: HttpListen) -> (Weir, Arc<StatusBoard>) {
        Weir::start_config(self.config(http))
    }

    /// Produces `{"n":n}` to partition `n % 3` and waits for the ack.
    async fn send(&self, n: usize) {
        let record = Send::on((n % 3) as i32, &format!("k{n}"), &format!(r#"{{"n":{n}}}"#));
        self.producer.send(&self.t.input, &[record]).await;
    }

    async fn read(&self, n: usize, quiet: Duration) -> Vec<Received> {
        consume(&self.t.output, n, Duration::from_secs(90), quiet).await
    }
}

fn n_of(r: &Received) -> usize {
    r.json()["n"].as_u64().unwrap() as usize
}

fn versions(out: &[Received]) -> Vec<String> {
    out.iter()
        .map(|r| r.header("weir-version").unwrap_or_default())
        .collect()
}

async fn running(status: &StatusBoard, guest: &str) {
    wait_running(status, "echo", &digest(&test_guest(guest))).await;
}

/// Waits until echo's `oci` status entry satisfies `ok`.
async fn oci_status(
    status: &StatusBoard,
    what: &str,
    ok: impl Fn(&weir::status::OciStatus) -> bool,
) -> ModuleStatus {
    eventually(Duration::from_secs(30), what, || {
        module_status(status, "echo").filter(|m| m.oci.as_ref().is_some_and(&ok))
    })
    .await
}

/// echo's entry of `/status` on `http`.
async fn shown(http: std::net::SocketAddr) -> serde_json::Value {
    let (code, _, body) = tokio::task::spawn_blocking(move || http_get(http, "/status"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    json.as_array().unwrap()[0].clone()
}

fn plain_client() -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..ClientConfig::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_module_runs_from_the_registry() {
    init_logging();
    let echo = Echo::new("oci-run").await;
    let pushed = echo.push("echo-v1", &echo.latest()).await;
    let (weir, status) = echo.start(HttpListen::Disabled).await;
    running(&status, "echo-v1").await;
    for n in 0..30 {
        echo.send(n).await;
    }
    let out = echo.read(30, Duration::from_millis(500)).await;
    let mut ns: Vec<usize> = out.iter().map(n_of).collect();
    ns.sort_unstable();
    assert_eq!(ns, (0..30).collect::<Vec<_>>());
    assert!(versions(&out).iter().all(|v| v == "v1"));
    let module = module_status(&status, "echo").unwrap();
    let oci = module.oci.unwrap();
    assert_eq!(oci.reference, echo.latest());
    assert_eq!(oci.digest.as_deref(), Some(pushed.as_str()));
    assert_eq!(oci.error, None);
    // Cached by digest.
    let layer = echo
        .cache()
        .join("blobs/sha256")
        .join(digest(&test_guest("echo-v1")));
    assert!(layer.is_file(), "{}", layer.display());
    weir.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_moved_under_traffic_switches_each_partition_once_without_loss() {
    init_logging();
    let echo = Echo::new("oci-move").await;
    echo.push("echo-v1", &echo.latest()).await;
    let (weir, status) = echo.start(HttpListen::Disabled).await;
    running(&status, "echo-v1").await;
    echo.send(0).await;
    assert_eq!(echo.read(1, Duration::ZERO).await.len(), 1);

    // A steady 60 events/s over three partitions; the tag moves to v2 a
    // third of the way in (pushed beside the traffic).
    let total = 300;
    let mut push = None;
    for n in 1..total {
        if n == total / 3 {
            let latest = echo.latest();
            let manifest = echo.files.path().join("echo.toml");
            push = Some(tokio::task::spawn_blocking(move || {
                let out = std::process::Command::new(weir_binary())
                    .args(["push".as_ref(), test_guest("echo-v2").as_os_str()])
                    .arg(&latest)
                    .arg("--manifest")
                    .arg(&manifest)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{out:?}");
                now_ms()
            }));
        }
        echo.send(n).await;
        tokio::time::sleep(Duration::from_millis(16)).await;
    }
    let moved_at_ms = push.unwrap().await.unwrap();
    running(&status, "echo-v2").await;

    let out = echo.read(total, Duration::from_secs(2)).await;
    let mut ns: Vec<usize> = out.iter().map(n_of).collect();
    ns.sort_unstable();
    assert_eq!(
        ns,
        (0..total).collect::<Vec<_>>(),
        "every event exactly once across the move"
    );
    for (partition, runs) in version_runs(&out) {
        assert_eq!(
            runs,
            ["v1", "v2"],
            "partition {partition} switches once, from v1 to v2"
        );
    }
    let first_v2 = out
        .iter()
        .filter(|r| r.header("weir-version").as_deref() == Some("v2"))
        .map(|r| {
            r.header("weir-handled-at-ms")
                .unwrap()
                .parse::<u128>()
                .unwrap()
        })
        .min()
        .unwrap();
    println!(
        "OCI reload latency: tag moved (weir push returned) -> first event handled by v2 = {} ms \
         (oci-poll-interval {POLL:?})",
        first_v2.saturating_sub(moved_at_ms)
    );
    let module = module_status(&status, "echo").unwrap();
    assert_eq!((module.loads, module.failures), (2, 0));
    weir.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_goes_away_leaves_the_module_serving_and_says_why() {
    init_logging();
    let mut echo = Echo::new("oci-away").await;
    echo.push("echo-v1", &echo.latest()).await;
    let http = free_addr();
    let (weir, status) = echo.start(HttpListen::Addr(http)).await;
    running(&status, "echo-v1").await;

    echo.registry.stop();
    let down = oci_status(&status, "the registry reported unreachable", |o| {
        o.error
            .as_deref()
            .is_some_and(|e| e.contains("unreachable"))
    })
    .await;
    assert_eq!(down.state, ModuleState::Running);
    let json = shown(http).await;
    assert_eq!(json["state"], "running", "{json}");
    let error = json["oci"]["error"].as_str().unwrap();
    assert!(error.starts_with("registry unreachable"), "{json}");
    println!("/status while the registry is down: {json}");
    for n in 0..20 {
        echo.send(n).await;
    }
    let out = echo.read(20, Duration::from_millis(500)).await;
    assert_eq!(out.len(), 20);
    assert!(versions(&out).iter().all(|v| v == "v1"), "v1 keeps serving");

    // Back: the error clears, and a moved tag is followed again.
    tokio::task::block_in_place(|| echo.registry.resume());
    oci_status(&status, "the error cleared", |o| o.error.is_none()).await;
    echo.push("echo-v2", &echo.latest()).await;
    running(&status, "echo-v2").await;
    echo.send(20).await;
    let out = echo.read(21, Duration::from_millis(500)).await;
    let last = out.iter().find(|r| n_of(r) == 20).unwrap();
    assert_eq!(last.header("weir-version").as_deref(), Some("v2"));
    weir.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_or_broken_artifacts_are_refused_and_the_last_good_version_stays() {
    init_logging();
    let echo = Echo::new("oci-bad").await;
    let v1 = echo.push("echo-v1", &echo.latest()).await;
    let http = free_addr();
    let (weir, status) = echo.start(HttpListen::Addr(http)).await;
    running(&status, "echo-v1").await;
    let client = plain_client();
    let latest: Reference = echo.latest().parse().unwrap();

    // 1. The registry serves a component that does not match its digest:
    // v2 is pushed to another tag, its layer overwritten in the registry's
    // storage, then `latest` moved to it.
    let staging = echo.registry.reference("weir/echo:staging");
    let v2 = echo.push("echo-v2", &staging).await;
    let layer = format!("sha256:{}", digest(&test_guest("echo-v2")));
    std::fs::write(echo.registry.blob_file(&layer), b"tampered bytes").unwrap();
    let staging: Reference = staging.parse().unwrap();
    let (raw, _) = client
        .pull_manifest_raw(&staging, &RegistryAuth::Anonymous, &[OCI_IMAGE_MEDIA_TYPE])
        .await
        .unwrap();
    client
        .push_manifest_raw(
            &latest,
            raw,
            http::HeaderValue::from_static(OCI_IMAGE_MEDIA_TYPE),
        )
        .await
        .unwrap();
    let refused = oci_status(&status, "the digest mismatch", |o| {
        o.error
            .as_deref()
            .is_some_and(|e| e.contains("digest mismatch"))
    })
    .await;
    let oci = refused.oci.unwrap();
    assert!(oci.error.as_deref().unwrap().contains(&layer), "{oci:?}");
    assert_eq!(
        oci.digest.as_deref(),
        Some(v1.as_str()),
        "v2 never handed over"
    );
    assert_ne!(v1, v2);
    assert_eq!(refused.state, ModuleState::Running);
    let json = shown(http).await;
    println!("/status after a tampered layer: {json}");

    // 2. A blob that is not a component, with a valid digest: pulled, then
    // refused by the loader like a bad file in the folder.
    let garbage = ImageLayer::new(b"not a component".to_vec(), "application/wasm".into(), None);
    let config = Config::new(
        b"{}".to_vec(),
        "application/vnd.wasm.config.v0+json".into(),
        None,
    );
    let annotations = BTreeMap::from([(
        "dev.weir.manifest".to_owned(),
        echo.t.manifest().to_string(),
    )]);
    let mut manifest =
        OciImageManifest::build(std::slice::from_ref(&garbage), &config, Some(annotations));
    manifest.media_type = Some(OCI_IMAGE_MEDIA_TYPE.into());
    // Serialised with serde_json: oci-client's own `push` writes canonical
    // JSON, whose strings keep the manifest text's raw newlines, and the
    // registry refuses that.
    for (data, digest) in [
        (garbage.data.clone(), garbage.sha256_digest()),
        (config.data.clone(), manifest.config.digest.clone()),
    ] {
        client.push_blob(&latest, data, &digest).await.unwrap();
    }
    client
        .push_manifest_raw(
            &latest,
            serde_json::to_vec(&manifest).unwrap(),
            http::HeaderValue::from_static(OCI_IMAGE_MEDIA_TYPE),
        )
        .await
        .unwrap();
    let failed = eventually(Duration::from_secs(30), "the load failure", || {
        module_status(&status, "echo").filter(|m| m.failures == 1)
    })
    .await;
    let ModuleState::ReloadFailed { reason } = &failed.state else {
        panic!("expected reload-failed, got {failed:?}");
    };
    assert!(reason.contains("not a WebAssembly component"), "{reason}");
    assert_eq!(
        failed.digest.as_deref(),
        Some(digest(&test_guest("echo-v1")).as_str()),
        "v1 still serves"
    );
    assert_eq!(failed.oci.unwrap().error, None, "the pull itself succeeded");
    for n in 0..10 {
        echo.send(n).await;
    }
    let out = echo.read(10, Duration::from_millis(500)).await;
    assert!(versions(&out).iter().all(|v| v == "v1"), "v1 keeps serving");
    // The last good version is what the cache records for a restart.
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(echo.cache().join("refs/echo.json")).unwrap())
            .unwrap();
    assert_eq!(record["digest"], v1.as_str());
    weir.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_the_registry_down_serves_from_the_cache() {
    init_logging();
    let mut echo = Echo::new("oci-cache").await;
    let v1 = echo.push("echo-v1", &echo.latest()).await;
    let (weir, status) = echo.start(HttpListen::Disabled).await;
    running(&status, "echo-v1").await;
    weir.stop().await.unwrap();

    echo.registry.stop();
    let (weir, status) = echo.start(HttpListen::Disabled).await;
    running(&status, "echo-v1").await;
    let module = module_status(&status, "echo").unwrap();
    let oci = module.oci.unwrap();
    assert_eq!(oci.digest.as_deref(), Some(v1.as_str()));
    assert!(
        oci.error.as_deref().unwrap().contains("unreachable"),
        "{oci:?}"
    );
    for n in 0..10 {
        echo.send(n).await;
    }
    let out = echo.read(10, Duration::from_millis(500)).await;
    assert_eq!(out.len(), 10);
    assert!(versions(&out).iter().all(|v| v == "v1"));
    weir.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_comes_from_the_environment_for_push_and_pull() {
    init_logging();
    let registry = tokio::task::spawn_blocking(Registry::start_with_basic_auth)
        .await
        .unwrap();
    let echo = Echo::with("oci-auth", registry).await;
    let denied = echo.push_with("echo-v1", &echo.latest(), &[]).await;
    assert!(!denied.status.success());
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(stderr.contains("cannot push to"), "{stderr}");
    let wrong = [
        ("WEIR_OCI_USERNAME", registry::USER),
        ("WEIR_OCI_PASSWORD", "wrong"),
    ];
    assert!(
        !echo
            .push_with("echo-v1", &echo.latest(), &wrong)
            .await
            .status
            .success()
    );
    let right = [
        ("WEIR_OCI_USERNAME", registry::USER),
        ("WEIR_OCI_PASSWORD", registry::PASSWORD),
    ];
    let out = echo.push_with("echo-v1", &echo.latest(), &right).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pushed = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    // SAFETY: this variable is read only by the weir started below, and
    // set before it starts; no other test reads or writes it.
    unsafe { std::env::set_var("WEIR_TEST_OCI_AUTH_PASSWORD", registry::PASSWORD) };
    let mut config = echo.config(HttpListen::Disabled);
    config.oci[0].username = Some(registry::USER.into());
    config.oci[0].password_env = Some("WEIR_TEST_OCI_AUTH_PASSWORD".into());
    let (weir, status) = Weir::start_config(config);
    running(&status, "echo-v1").await;
    let oci = module_status(&status, "echo").unwrap().oci.unwrap();
    assert_eq!(oci.digest.as_deref(), Some(pushed.as_str()));
    echo.send(0).await;
    assert_eq!(echo.read(1, Duration::ZERO).await.len(), 1);
    weir.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_checks_the_component_first_and_publishes_nothing_weir_would_refuse() {
    init_logging();
    let echo = Echo::new("oci-push-check").await;
    let out = echo.push_with("wrong-world", &echo.latest(), &[]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("exports neither"), "{stderr}");
    assert!(out.stdout.is_empty(), "no digest printed");
    let addr = echo.registry.host().parse().unwrap();
    let (code, _, body) =
        tokio::task::spawn_blocking(move || http_get(addr, "/v2/weir/echo/tags/list"))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(code, 404, "nothing was pushed: {body}");
}
