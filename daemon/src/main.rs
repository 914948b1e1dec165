//! `vshmd`: the vshm daemon. One process holds the connections to the
//! Valkey/Redis servers and serves many client processes through shared
//! memory; clients register over a Unix socket.

mod config;
mod metrics;
mod server;
mod sock;
mod stats;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use config::{DaemonConfig, LogFormat, DEFAULT_CONFIG_PATH, DEFAULT_SOCKET_PATH};

/// mimalloc instead of glibc's malloc: the per-request path allocates a few
/// small buffers per request (the request copied out of the ring, the reply
/// value, the completion archive), and under glibc malloc/free took about a
/// fifth of the daemon's CPU in the async benchmark (docs/performance.md,
/// "Allocator").
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "vshmd",
    version,
    about = "vshm daemon: one shared Valkey/Redis connection pool for many client processes",
    long_about = "vshm daemon: one shared Valkey/Redis connection pool for many client processes.\n\n\
        Runs in the foreground (for systemd), logs to stderr, and serves client processes that \
        register over its Unix socket: each gets its own shared-memory segment, and all share the \
        daemon's connections to the servers. SIGTERM or SIGINT drains (no new registrations, \
        in-flight requests complete within shutdown_grace_ms) and exits 0.\n\n\
        See daemon/vshmd.example.toml and docs/operations.md for the configuration."
)]
struct Cli {
    /// Configuration file (TOML). Without it, /etc/vshm/vshmd.toml is read
    /// if it exists, else the built-in defaults apply.
    #[arg(short, long, value_name = "PATH", global = true)]
    config: Option<PathBuf>,

    /// Registration socket; overrides `socket_path` from the configuration
    /// (for `stats`: the socket of the daemon to ask).
    #[arg(short, long, value_name = "PATH", global = true)]
    socket: Option<PathBuf>,

    /// Log format; overrides `log_format`.
    #[arg(long, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormat>,

    /// Log filter (`info`, `debug`, `vshmd=debug,vshm_core=warn`, ...);
    /// overrides `log_level`.
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,

    /// Read and validate the configuration, print the effective settings
    /// (passwords redacted) and exit: 0 if valid, 1 if not.
    #[arg(long)]
    check_config: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the statistics of a running daemon, asked over its socket:
    /// clients, requests, errors and latency percentiles per client, and
    /// the connections the daemon holds per server node.
    Stats {
        /// Prometheus exposition text instead of the table.
        #[arg(long)]
        prometheus: bool,
        /// Give up after this many milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 5000)]
        timeout_ms: u64,
    },
}

fn load_config(path: Option<&Path>) -> Result<DaemonConfig, String> {
    match path {
        Some(p) => DaemonConfig::load(p),
        None if Path::new(DEFAULT_CONFIG_PATH).exists() => {
            DaemonConfig::load(Path::new(DEFAULT_CONFIG_PATH))
        }
        None => Ok(DaemonConfig::default()),
    }
}

fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| "info".into());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => b.init(),
        LogFormat::Json => b.json().init(),
    }
}

fn redacted(cfg: &DaemonConfig) -> DaemonConfig {
    let mut c = cfg.clone();
    if c.server.password.is_some() {
        c.server.password = Some("<redacted>".into());
    }
    for p in c.auth_profiles.values_mut() {
        if p.password.is_some() {
            p.password = Some("<redacted>".into());
        }
    }
    c
}

fn main() -> ExitCode {
    let cli = Cli::parse();

    if let Some(Command::Stats {
        prometheus,
        timeout_ms,
    }) = &cli.command
    {
        let socket = match (&cli.socket, &cli.config) {
            (Some(s), _) => s.clone(),
            (None, Some(c)) => match DaemonConfig::load(c) {
                Ok(cfg) => cfg.socket_path,
                Err(e) => {
                    eprintln!("vshmd stats: {e}");
                    return ExitCode::FAILURE;
                }
            },
            (None, None) => load_config(None)
                .map(|c| c.socket_path)
                .unwrap_or_else(|_| PathBuf::from(DEFAULT_SOCKET_PATH)),
        };
        return match vshm_client::daemon::stats(
            &socket,
            *prometheus,
            Duration::from_millis(*timeout_ms),
        ) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("vshmd stats: {}", e.message);
                ExitCode::FAILURE
            }
        };
    }

    let mut cfg = match load_config(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vshmd: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(s) = cli.socket {
        cfg.socket_path = s;
    }
    if let Some(f) = cli.log_format {
        cfg.log_format = f;
    }
    if let Some(l) = cli.log_level {
        cfg.log_level = l;
    }
    if let Err(e) = cfg.validate() {
        eprintln!("vshmd: {e}");
        return ExitCode::FAILURE;
    }
    if cli.check_config {
        match toml::to_string(&redacted(&cfg)) {
            Ok(t) => {
                println!(
                    "# effective configuration (socket_mode = 0o{:o}; allowed_uids unset = [{}])",
                    cfg.socket_mode,
                    nix::unistd::getuid()
                );
                print!("{t}");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("vshmd: cannot print the configuration: {e}");
                return ExitCode::FAILURE;
            }
        }
    }

    init_logging(cfg.log_format, &cfg.log_level);
    raise_nofile_limit();
    // One thread (the default): a current-thread runtime on this thread,
    // measured best on a 2-core machine (see vshm_core::runtime); more: a
    // multi-thread runtime (0: one worker per CPU).
    let mut rt = if cfg.worker_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if cfg.worker_threads > 1 {
            b.worker_threads(cfg.worker_threads);
        }
        b
    };
    let rt = match rt.thread_name("vshmd").enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    let r = rt.block_on(server::run(cfg));
    // Whatever is still running (sessions of clients, tasks of requests
    // that were closed) is dropped.
    rt.shutdown_timeout(Duration::from_secs(1));
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Each client holds three descriptors in the daemon (socket, segment
/// memfd, doorbell eventfd): raise the soft RLIMIT_NOFILE to the hard
/// limit so that `limits.max_clients` (default 1024) fit under the usual
/// soft limit of 1024.
fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "getrlimit(RLIMIT_NOFILE)");
        return;
    }
    if lim.rlim_cur >= lim.rlim_max {
        tracing::debug!(nofile = lim.rlim_cur, "descriptor limit");
        return;
    }
    let old = lim.rlim_cur;
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "setrlimit(RLIMIT_NOFILE)");
    } else {
        tracing::info!(from = old, to = lim.rlim_cur, "raised the descriptor limit");
    }
}
