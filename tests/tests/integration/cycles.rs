//! Loops through topics: a module that consumes what it writes is refused
//! unless its manifest sets `allow-cycles = true`; modules feeding each other
//! in a ring are reported in `/status` and the log.

use std::time::Duration;

use weir::http::HttpListen;
use weir::status::ModuleState;
use weir_tests::devtools::weir;
use weir_tests::process::{ProcessConfig, WeirProcess};
use weir_tests::{
    Manifest, ModulesDir, Send, Topics, Weir, broker, consume, digest, eventually, free_addr,
    guest, http_get, init_logging, module_status, produce, unique, wait_running,
};

/// The topics of a `router` module that reads `<prefix>-other` and may
/// write `<prefix>-eu` and `<prefix>-other`: an order of an EU country
/// leaves the loop for `<prefix>-eu`; one without a country would go round.
struct Router {
    prefix: String,
    other: String,
    eu: String,
}

impl Router {
    async fn create() -> Self {
        let prefix = unique("cyc-route");
        let (other, eu) = (format!("{prefix}-other"), format!("{prefix}-eu"));
        broker().create_topic(&other).await;
        broker().create_topic(&eu).await;
        Self { prefix, other, eu }
    }

    /// Its manifest; `opt_in` sets `allow-cycles = true`.
    fn manifest(&self, opt_in: bool) -> Manifest {
        let m = Manifest::new(
            &self.other,
            &[self.eu.as_str(), self.other.as_str()],
            &format!("g-{}", self.prefix),
        )
        .config("topic-prefix", self.prefix.as_str())
        .config("eu", "DE,FR");
        if opt_in {
            m.set("allow-cycles", true)
        } else {
            m
        }
    }

    /// What the refusal names.
    fn refusal(&self) -> String {
        format!("input topic `{}` is also in `output-topics`", self.other)
    }
}

/// `json-enrich` reading `t`'s input and writing its output.
fn enrich(t: &Topics) -> Manifest {
    t.manifest().config("region", "eu-west")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_consuming_module_is_refused_naming_the_topic_while_the_others_serve() {
    init_logging();
    let good = Topics::create("cyc-good").await;
    let route = Router::create().await;
    let dir = ModulesDir::new();
    dir.add("good", "json-enrich", enrich(&good));
    dir.add("looping", "router", route.manifest(false));

    // `weir check` says so before anything runs.
    weir(dir.path(), &["check", "looping.wasm"]).failure(&[
        "looping.toml",
        &route.refusal(),
        "one event could loop forever",
        "set `allow-cycles = true`",
    ]);

    let mut process = WeirProcess::start("cycles-refused", &ProcessConfig::new(dir.path()));
    process.wait_ready(Duration::from_secs(60));
    let status = process.status().expect("/status answers");
    let modules = status.as_array().expect("a list");
    let shown = |name: &str| {
        modules
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {status}"))
    };
    assert_eq!(shown("good")["state"], "running", "{status}");
    let looping = shown("looping");
    assert_eq!(looping["state"], "failed", "{status}");
    assert_eq!(looping["digest"], serde_json::Value::Null, "never loaded");
    let reason = looping["reason"].as_str().unwrap();
    assert!(reason.contains("looping.toml"), "{reason}");
    assert!(reason.contains(&route.refusal()), "{reason}");
    assert!(reason.contains("allow-cycles = true"), "{reason}");
    // The log says the same, once.
    let logged: Vec<_> = process
        .logged("module not loaded")
        .into_iter()
        .filter(|f| f["module"] == "looping")
        .collect();
    assert_eq!(logged.len(), 1, "{}", process.log_tail(30));
    assert_eq!(logged[0]["error"].as_str(), Some(reason));

    // The other module serves.
    produce(&good.input, &[Send::kv("k", r#"{"n":1}"#)]).await;
    let out = consume(
        &good.output,
        1,
        Duration::from_secs(60),
        Duration::from_millis(200),
    )
    .await;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].json()["region"], "eu-west");
    process.stop(Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opted_in_self_consuming_module_runs_and_a_reload_without_the_opt_in_is_refused() {
    init_logging();
    let route = Router::create().await;
    let dir = ModulesDir::new();
    dir.add("looping", "router", route.manifest(true));
    let (weir, status) = Weir::start_watching(dir.path(), Duration::from_millis(200));
    let router = digest(&guest("router"));
    wait_running(&status, "looping", &router).await;

    // An EU order goes to `-eu` once; it never comes back to `-other`.
    let order = |n: u32| Send::kv(&format!("o{n}"), &format!(r#"{{"country":"DE","n":{n}}}"#));
    produce(&route.other, &[order(1)]).await;
    let eu = consume(
        &route.eu,
        1,
        Duration::from_secs(60),
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(eu.len(), 1);
    assert_eq!(eu[0].json()["n"], 1);
    let other = consume(
        &route.other,
        1,
        Duration::from_secs(10),
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(other.len(), 1, "only the order produced");

    // Without the opt-in, the new manifest is refused and the loaded
    // version keeps serving.
    dir.manifest("looping", route.manifest(false));
    let failed = eventually(Duration::from_secs(30), "the refused reload", || {
        module_status(&status, "looping").filter(|m| m.failures == 1)
    })
    .await;
    assert_eq!(failed.digest.as_deref(), Some(router.as_str()));
    let ModuleState::ReloadFailed { reason } = &failed.state else {
        panic!("expected reload-failed: {failed:?}");
    };
    assert!(reason.contains(&route.refusal()), "{reason}");
    assert!(reason.contains("allow-cycles = true"), "{reason}");
    produce(&route.other, &[order(2)]).await;
    let eu = consume(
        &route.eu,
        2,
        Duration::from_secs(60),
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(eu.len(), 2, "the opted-in version still serves");
    weir.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_feeding_each_other_are_reported_until_one_opts_in() {
    init_logging();
    let (x, y) = (unique("cyc-x"), unique("cyc-y"));
    broker().create_topic(&x).await;
    broker().create_topic(&y).await;
    let dir = ModulesDir::new();
    let pipe = |from: &str, to: &str| {
        Manifest::pipe(from, to, &unique("g-cyc")).config("region", "eu-west")
    };
    let (ping, pong) = (pipe(&x, &y), pipe(&y, &x));
    dir.add("ping", "json-enrich", ping);
    dir.add("pong", "json-enrich", pong.clone());
    let http = free_addr();
    let (weir, status) = Weir::start_watching_with_http(
        dir.path(),
        Duration::from_millis(200),
        HttpListen::Addr(http),
    );
    let enrich = digest(&guest("json-enrich"));
    wait_running(&status, "ping", &enrich).await;
    wait_running(&status, "pong", &enrich).await;

    let ring = format!("ping → pong → ping via topics `{y}`, `{x}`");
    for name in ["ping", "pong"] {
        let warnings = module_status(&status, name).unwrap().warnings;
        assert_eq!(warnings.len(), 1, "{name}: {warnings:?}");
        assert!(warnings[0].contains(&ring), "{name}: {warnings:?}");
        assert!(warnings[0].contains("allow-cycles = true"), "{warnings:?}");
    }
    let (code, _, body) = tokio::task::spawn_blocking(move || http_get(http, "/status"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, 200);
    assert!(body.contains(&ring), "{body}");

    // One module of the ring opting in silences it.
    dir.manifest("pong", pong.set("allow-cycles", true));
    eventually(Duration::from_secs(30), "the warning cleared", || {
        let (ping, pong) = (
            module_status(&status, "ping")?,
            module_status(&status, "pong")?,
        );
        (pong.loads == 2 && ping.warnings.is_empty() && pong.warnings.is_empty()).then_some(())
    })
    .await;
    weir.stop().await.unwrap();
}
