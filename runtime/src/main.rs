//! The `weir` command line.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use weir::config::{ConfigError, RunConfig};
use weir::embedded::EmbeddedKafka;

/// mimalloc instead of glibc's malloc: the hot path allocates and frees
/// small buffers on several threads (events, emitted records), where glibc
/// spent ~9 % of the handling threads' time consolidating and unlinking
/// chunks (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Kafka event processing with WebAssembly consumer components.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the modules of a folder against a Kafka cluster.
    Run {
        /// A weir.toml file; flags override its values.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Bootstrap servers, e.g. 127.0.0.1:9092.
        #[arg(long, env = "WEIR_BROKERS")]
        brokers: Option<String>,
        /// Folder of <name>.wasm components and <name>.toml manifests.
        #[arg(long, env = "WEIR_MODULES")]
        modules: Option<PathBuf>,
        /// Address of /metrics, /livez and /readyz (default 127.0.0.1:9464;
        /// `none` disables them).
        #[arg(long, env = "WEIR_HTTP_LISTEN")]
        http_listen: Option<weir::http::HttpListen>,
        /// This process's name for static group membership, e.g. a pod name
        /// (`instance-id`).
        #[arg(long, env = "WEIR_INSTANCE_ID")]
        instance_id: Option<String>,
    },
    /// Run the modules of a folder against an embedded in-memory broker,
    /// creating the topics their manifests name.
    Dev {
        /// A weir.toml file; the embedded broker replaces its `brokers`,
        /// and flags override its other values.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Folder of <name>.wasm components and <name>.toml manifests
        /// (default: the config's `modules`, else target/modules).
        #[arg(long)]
        modules: Option<PathBuf>,
        /// Partitions of each created topic.
        #[arg(long, default_value_t = 3)]
        partitions: i32,
        /// Also write the bootstrap address to this file.
        #[arg(long)]
        bootstrap_file: Option<PathBuf>,
        /// Address of /metrics, /livez and /readyz (default 127.0.0.1:9464;
        /// `none` disables them).
        #[arg(long, env = "WEIR_HTTP_LISTEN")]
        http_listen: Option<weir::http::HttpListen>,
    },
    /// Show a running weir's modules: versions, partitions, lag, stalls.
    Status {
        #[command(flatten)]
        client: ClientArgs,
        /// Print /status's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Pause a module: its partitions stay assigned and are not fetched;
    /// events in flight finish and their offsets are committed.
    Pause {
        /// The module.
        module: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Resume a paused module where it stopped.
    Resume {
        /// The module.
        module: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Move a module's group offsets: the module's consumer stops (in-flight
    /// events finish and commit), the offsets move, and it starts again.
    Offsets {
        /// The module.
        module: String,
        /// earliest, latest, an RFC 3339 time in UTC, or
        /// topic:partition:offset (repeatable).
        #[arg(long = "reset-to", required = true)]
        reset_to: Vec<String>,
        /// Print the planned offsets without moving anything.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Produce one record per stdin line.
    Produce {
        /// Bootstrap servers.
        #[arg(long, env = "WEIR_BROKERS")]
        brokers: String,
        /// Destination topic.
        #[arg(long)]
        topic: String,
        /// Split each line into key and value at the first occurrence.
        #[arg(long)]
        key_separator: Option<String>,
        /// A header added to every record, as name=value (repeatable).
        #[arg(long = "header", value_parser = parse_header)]
        headers: Vec<(String, String)>,
    },
    /// Print a topic's records from the beginning, one per line.
    Consume {
        /// Bootstrap servers.
        #[arg(long, env = "WEIR_BROKERS")]
        brokers: String,
        /// Topic to read.
        #[arg(long)]
        topic: String,
        /// Stop after this many records.
        #[arg(long)]
        count: Option<usize>,
        /// Stop when nothing arrived for this long.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        idle: Duration,
    },
    /// Create a consumer project from a template.
    New {
        /// Module name: lowercase letters, digits and hyphens, e.g. order-enricher.
        name: String,
        /// Language of the template (rust, or any other template this binary embeds).
        #[arg(long, default_value = "rust")]
        lang: String,
        /// Parent directory of the new project.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The weir-sdk source directory for Rust projects (default: sdk/ of
        /// the weir tree this binary was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build the project in a directory into dist/<name>.wasm and check it.
    Build {
        /// Project directory.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Validate a component: world, imports, exports, effective manifest.
    Check {
        #[command(flatten)]
        module: ModuleArgs,
        /// Fail when the component has no manifest (`weir run` needs one).
        #[arg(long)]
        require_manifest: bool,
    },
    /// Check a component like `weir check --require-manifest`, then publish
    /// it with its manifest to an OCI registry; prints the manifest digest.
    Push {
        #[command(flatten)]
        module: ModuleArgs,
        /// Where to publish: <registry>/<repository>:<tag>, e.g.
        /// 127.0.0.1:5000/weir/orders:v1.
        reference: String,
        /// Plain HTTP (always allowed for a registry on a loopback address).
        #[arg(long)]
        insecure: bool,
        /// Basic-auth user (the password is read from WEIR_OCI_PASSWORD).
        #[arg(long, env = "WEIR_OCI_USERNAME")]
        username: Option<String>,
    },
    /// Run a component offline on recorded events (JSON lines), no Kafka.
    Replay {
        #[command(flatten)]
        module: ModuleArgs,
        /// JSON-lines events file (`-` for stdin).
        #[arg(long)]
        events: PathBuf,
        /// Output: one JSON object per event, or text.
        #[arg(long, value_enum, default_value_t = ReplayFormat::Json)]
        format: ReplayFormat,
        /// Stateful modules: seed the stores from this JSON-lines file
        /// (`{"partition": 0, "key": "k", "value": "v"}` per line).
        #[arg(long)]
        state_in: Option<PathBuf>,
        /// Stateful modules: write the stores to this JSON-lines file after
        /// the last event.
        #[arg(long)]
        state_out: Option<PathBuf>,
    },
}

/// How the operator's commands reach weir.
#[derive(Debug, clap::Args)]
struct ClientArgs {
    /// weir's HTTP listener.
    #[arg(long, env = "WEIR_URL", default_value = "http://127.0.0.1:9464")]
    url: weir::ops::client::Endpoint,
    /// A file holding the admin token (default: WEIR_ADMIN_TOKEN).
    #[arg(long)]
    token_file: Option<PathBuf>,
}

impl ClientArgs {
    /// The admin token: the file's content, else `WEIR_ADMIN_TOKEN`.
    fn token(&self) -> anyhow::Result<Option<String>> {
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", path.display()))?;
            return Ok(Some(text.trim().to_owned()));
        }
        Ok(std::env::var("WEIR_ADMIN_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty()))
    }
}

/// A component and how `weir run` would configure it.
#[derive(Debug, clap::Args)]
struct ModuleArgs {
    /// The component (.wasm).
    wasm: PathBuf,
    /// Its manifest (default: the .toml next to the component).
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// A weir.toml whose [limits], max-wasm-stack and max-module-bytes apply.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

impl From<ModuleArgs> for weir::devtools::ModuleOptions {
    fn from(a: ModuleArgs) -> Self {
        Self {
            wasm: a.wasm,
            manifest: a.manifest,
            config: a.config,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ReplayFormat {
    Json,
    Text,
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected name=value, got {s:?}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            tracing::error!(error = %err, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %format_args!("{err:#}"), "weir failed");
            if err.downcast_ref::<ConfigError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run {
            config,
            brokers,
            modules,
            http_listen,
            instance_id,
        } => {
            let mut cfg = load_config(config.as_deref())?;
            cfg.brokers = brokers.or(cfg.brokers);
            cfg.modules = modules.or(cfg.modules);
            cfg.instance_id = instance_id.or(cfg.instance_id);
            if let Some(listen) = http_listen {
                cfg.http_listen = listen;
            }
            cfg.validate(config.as_deref())?;
            weir::runtime::run(cfg, shutdown_signal()?).await
        }
        Command::Dev {
            config,
            modules,
            partitions,
            bootstrap_file,
            http_listen,
        } => {
            let mut cfg = load_config(config.as_deref())?;
            cfg.modules = modules
                .or(cfg.modules)
                .or_else(|| Some(PathBuf::from("target/modules")));
            if let Some(listen) = http_listen {
                cfg.http_listen = listen;
            }
            dev(cfg, partitions, bootstrap_file).await
        }
        command @ (Command::Status { .. }
        | Command::Pause { .. }
        | Command::Resume { .. }
        | Command::Offsets { .. }) => tokio::task::block_in_place(|| operate(command)),
        Command::Produce {
            brokers,
            topic,
            key_separator,
            headers,
        } => {
            let stdin = std::io::stdin().lock();
            let n = tokio::task::block_in_place(|| {
                weir::client::produce_lines(
                    &brokers,
                    &topic,
                    key_separator.as_deref(),
                    &headers,
                    stdin,
                )
            })?;
            tracing::info!(topic = %topic, records = n, "produced");
            Ok(())
        }
        Command::Consume {
            brokers,
            topic,
            count,
            idle,
        } => {
            let mut stdout = std::io::stdout().lock();
            let n = tokio::task::block_in_place(|| {
                weir::client::consume_to(&brokers, &topic, count, idle, &mut stdout)
            })?;
            stdout.flush()?;
            tracing::info!(topic = %topic, records = n, "consumed");
            Ok(())
        }
        Command::Push {
            module,
            reference,
            insecure,
            username,
        } => push(module.into(), reference, insecure, username).await,
        command @ (Command::New { .. }
        | Command::Build { .. }
        | Command::Check { .. }
        | Command::Replay { .. }) => tokio::task::block_in_place(|| devtool(command)),
    }
}

/// The config file, if any, with the environment's admin token over it.
fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<RunConfig> {
    let mut cfg = match path {
        Some(path) => RunConfig::from_file(path)?,
        None => RunConfig::default(),
    };
    if let Ok(token) = std::env::var("WEIR_ADMIN_TOKEN")
        && !token.trim().is_empty()
    {
        cfg.admin_token = Some(token);
    }
    Ok(cfg)
}

/// The operator's commands, against a running weir; blocking.
fn operate(command: Command) -> anyhow::Result<()> {
    use weir::ops::client;
    let mut stdout = std::io::stdout().lock();
    match command {
        Command::Status { client: c, json } => client::status(&c.url, json, &mut stdout),
        Command::Pause { module, client: c } => {
            client::pause(&c.url, c.token()?.as_deref(), &module, true, &mut stdout)
        }
        Command::Resume { module, client: c } => {
            client::pause(&c.url, c.token()?.as_deref(), &module, false, &mut stdout)
        }
        Command::Offsets {
            module,
            reset_to,
            dry_run,
            client: c,
        } => client::offsets(
            &c.url,
            c.token()?.as_deref(),
            &module,
            &reset_to,
            dry_run,
            &mut stdout,
        ),
        _ => anyhow::bail!("not an operator's command"),
    }
}

/// `weir dev`: an embedded broker with the topics the manifests name, then
/// `weir run` against it.
async fn dev(
    mut cfg: RunConfig,
    partitions: i32,
    bootstrap_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    let modules = cfg.modules_dir().to_path_buf();
    let broker = EmbeddedKafka::start()?;
    let bootstrap = broker.bootstrap_servers();
    let topics = broker.create_manifest_topics(&modules, partitions)?;
    tracing::info!(bootstrap = %bootstrap, topics = ?topics,
        "embedded kafka broker started (in memory only: data is lost when weir stops)");
    if let Some(path) = bootstrap_file {
        std::fs::write(&path, format!("{bootstrap}\n")).map_err(|e| {
            anyhow::anyhow!("cannot write bootstrap file `{}`: {e}", path.display())
        })?;
    }
    // The broker's changelogs live in memory only: so do the stores (a
    // folder of this run, removed at the end).
    let state_dir = std::env::temp_dir().join(format!("weir-dev-state-{}", std::process::id()));
    if cfg.brokers.is_some() {
        tracing::info!("`brokers` of the config file replaced by the embedded broker");
    }
    cfg.brokers = Some(bootstrap);
    cfg.state_dir = state_dir.clone();
    cfg.embedded = true;
    cfg.validate(None)?;
    let result = weir::runtime::run(cfg, shutdown_signal()?).await;
    let _ = std::fs::remove_dir_all(&state_dir);
    result
}

/// The developer-loop commands; blocking.
fn devtool(command: Command) -> anyhow::Result<()> {
    use weir::devtools::{build, check, new, replay};
    let mut stdout = std::io::stdout().lock();
    match command {
        Command::New {
            name,
            lang,
            dir,
            sdk,
        } => {
            let opts = new::NewOptions {
                name,
                lang,
                dir,
                sdk,
            };
            let (root, files) = new::create(&opts)?;
            for file in &files {
                writeln!(stdout, "created {}", file.display())?;
            }
            let mut next = format!("next: cd {} && weir build", root.display());
            if files.iter().any(|f| f.ends_with("events.jsonl")) {
                next += &format!(
                    " && weir replay dist/{}.wasm --events events.jsonl",
                    opts.name
                );
            }
            writeln!(stdout, "{next}")?;
        }
        Command::Build { dir } => {
            build::build(&dir, &mut stdout)?;
        }
        Command::Check {
            module,
            require_manifest,
        } => check::check(&module.into(), require_manifest, &mut stdout)?,
        Command::Replay {
            module,
            events,
            format,
            state_in,
            state_out,
        } => {
            let format = match format {
                ReplayFormat::Json => replay::Format::Json,
                ReplayFormat::Text => replay::Format::Text,
            };
            let state = replay::StateFiles {
                input: state_in,
                output: state_out,
            };
            replay::replay(&module.into(), &events, format, &state, &mut stdout)?;
        }
        Command::Run { .. }
        | Command::Push { .. }
        | Command::Dev { .. }
        | Command::Produce { .. }
        | Command::Consume { .. }
        | Command::Status { .. }
        | Command::Pause { .. }
        | Command::Resume { .. }
        | Command::Offsets { .. } => {
            anyhow::bail!("not a developer-loop command")
        }
    }
    Ok(())
}

/// `weir push`: the check report on stderr, the digest on stdout.
async fn push(
    opts: weir::devtools::ModuleOptions,
    reference: String,
    insecure: bool,
    username: Option<String>,
) -> anyhow::Result<()> {
    use weir::oci::{OciModule, push};
    let target = OciModule {
        reference,
        name: None,
        password_env: username.as_ref().map(|_| "WEIR_OCI_PASSWORD".to_owned()),
        username,
        insecure,
    };
    target.parsed().map_err(anyhow::Error::msg)?;
    let source = tokio::task::block_in_place(|| {
        let mut stderr = std::io::stderr().lock();
        weir::devtools::check::check(&opts, true, &mut stderr)?;
        let config = opts.run_config()?;
        anyhow::Ok(opts.read(&config)?.0)
    })?;
    let manifest = source.manifest_text.unwrap_or_default();
    let publication = push::publication(source.bytes, &manifest)?;
    let digest = push::push(&target, publication)
        .await
        .map_err(|e| anyhow::anyhow!("cannot push to `{}`: {e}", target.reference))?;
    tracing::info!(reference = %target.reference, digest = %digest, "pushed");
    writeln!(std::io::stdout().lock(), "{digest}")?;
    Ok(())
}

/// A token cancelled on SIGINT or SIGTERM.
fn shutdown_signal() -> anyhow::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        cancel.cancel();
    });
    Ok(token)
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,wasmtime=warn,cranelift=warn"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
