//! `corral-bench`: the benchmark suite of issue 10. It starts the release
//! `corral serve` (SQLite, PostgreSQL), loads data through the public store
//! API, drives the server with its own HTTP/1.1 load generator and a
//! simulated runner fleet, prints every figure beside its target (the
//! throughputs as a share of `GET /healthz` measured in the same run), and
//! writes the tables with the machine to BENCHMARKS.md. See README
//! ("Benchmarks") and ARCHITECTURE.md (`crates/bench`).

mod fleet;
mod http;
mod load;
mod report;
mod scenarios;
mod server;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::report::{Table, mark, millis, percent, rate, share, times};
use crate::scenarios::{Measured, Pace};
use crate::server::{ServeOptions, Server, StoreKind};

#[derive(Debug, Parser)]
#[command(
    name = "corral-bench",
    about = "Benchmarks a release build of corral: hot path, flat with size, a runner fleet",
    after_help = "Build the server first: cargo build --release -p corral-cli"
)]
struct Cli {
    #[command(subcommand)]
    what: What,
    /// The corral binary to measure (a release build).
    #[arg(long, global = true, default_value = "target/release/corral")]
    corral: PathBuf,
    /// Stores to measure the hot path and the size benchmark on.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "sqlite,postgres"
    )]
    stores: Vec<StoreArg>,
    /// Small sizes and short runs (about two minutes for `all`).
    #[arg(long, global = true)]
    quick: bool,
    /// Concurrent HTTP/1.1 keep-alive connections of the load generator.
    #[arg(long, global = true, default_value_t = 8)]
    connections: usize,
    /// Seconds each hot-path scenario runs per round [default: 5; quick 1.5].
    #[arg(long, global = true)]
    duration: Option<f64>,
    /// Rounds of the hot path (each runs every scenario once) [default: 3; quick 2].
    #[arg(long, global = true)]
    rounds: Option<usize>,
    /// Runners loaded for the hot path [default: 1000].
    #[arg(long, global = true)]
    hot_runners: Option<usize>,
    /// The small and the large size of the size benchmark [default: 1000,100000; quick 1000,5000].
    #[arg(long, global = true, value_delimiter = ',')]
    sizes: Option<Vec<usize>>,
    /// Simulated runners of the fleet [default: 10000; quick 500].
    #[arg(long, global = true)]
    fleet_runners: Option<usize>,
    /// The fleet server's --runner-grace in seconds; runners heartbeat every
    /// third of it [default: 90; quick 15].
    #[arg(long, global = true)]
    fleet_grace: Option<u64>,
    /// Seconds of the fleet's steady window [default: 60; quick 15].
    #[arg(long, global = true)]
    fleet_window: Option<u64>,
    /// Runners whose spec is changed to time its delivery [default: 1000; quick 100].
    #[arg(long, global = true)]
    fleet_changes: Option<usize>,
    /// Where to write the report; `-` for nowhere.
    #[arg(long, global = true, default_value = "BENCHMARKS.md")]
    output: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
enum What {
    /// Everything below.
    All,
    /// GetRunner, ListRunners and UpdateRunner against /healthz.
    Hot,
    /// Lists and GetRunner at the small and the large size.
    Size,
    /// Simulated runners connected to one SQLite server.
    Fleet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StoreArg {
    Sqlite,
    Postgres,
}

/// Everything a run needs, defaults resolved.
#[derive(Debug, Clone)]
struct Settings {
    corral: PathBuf,
    stores: Vec<StoreKind>,
    hot: Pace,
    size: Pace,
    hot_runners: usize,
    sizes: [usize; 2],
    fleet: fleet::FleetConfig,
}

impl Cli {
    fn settings(&self) -> anyhow::Result<Settings> {
        let quick = self.quick;
        let pick = |full: f64, small: f64| if quick { small } else { full };
        let duration = Duration::from_secs_f64(self.duration.unwrap_or(pick(5.0, 1.5)));
        let rounds = self.rounds.unwrap_or(if quick { 2 } else { 3 }).max(1);
        let warmup = Duration::from_millis(if quick { 300 } else { 500 });
        let sizes = match self.sizes.as_deref() {
            Some(&[small, large]) => [small, large],
            Some(_) => anyhow::bail!("--sizes takes two sizes: SMALL,LARGE"),
            None if quick => [1000, 5000],
            None => [1000, 100_000],
        };
        anyhow::ensure!(
            sizes[0] >= scenarios::DEEP_PAGE * scenarios::PAGE_SIZE as usize,
            "the small size must hold a page {} deep: at least {} runners",
            scenarios::DEEP_PAGE,
            scenarios::DEEP_PAGE * scenarios::PAGE_SIZE as usize
        );
        let grace = Duration::from_secs(self.fleet_grace.unwrap_or(if quick { 15 } else { 90 }));
        anyhow::ensure!(
            grace >= Duration::from_secs(3),
            "--fleet-grace must be at least 3 s"
        );
        let fleet_runners = self
            .fleet_runners
            .unwrap_or(if quick { 500 } else { 10_000 })
            .max(2);
        let mut stores: Vec<StoreKind> = Vec::new();
        for store in &self.stores {
            let kind = match store {
                StoreArg::Sqlite => StoreKind::Sqlite,
                StoreArg::Postgres => StoreKind::Postgres,
            };
            if !stores.contains(&kind) {
                stores.push(kind);
            }
        }
        Ok(Settings {
            corral: self.corral.clone(),
            stores,
            hot: Pace {
                connections: self.connections.max(1),
                warmup,
                duration,
                rounds,
            },
            size: Pace {
                connections: self.connections.max(1),
                warmup,
                duration: Duration::from_secs_f64(pick(3.0, 1.5)),
                rounds: if quick { 1 } else { 2 },
            },
            hot_runners: self.hot_runners.unwrap_or(1000).max(1),
            sizes,
            fleet: fleet::FleetConfig {
                runners: fleet_runners,
                grace,
                window: Duration::from_secs(self.fleet_window.unwrap_or(if quick {
                    15
                } else {
                    60
                })),
                changes: self
                    .fleet_changes
                    .unwrap_or(if quick { 100 } else { 1000 })
                    .min(fleet_runners - 1),
                killed: 3.min(fleet_runners - 1),
                probe_rate: 20,
            },
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = cli.settings()?;
    anyhow::ensure!(
        settings.corral.is_file(),
        "{} not found: build it first with `cargo build --release -p corral-cli`, or pass --corral PATH",
        settings.corral.display()
    );
    let open_files = server::raise_open_files_limit();
    let started = std::time::Instant::now();
    let mut tables = Vec::new();
    if matches!(cli.what, What::All | What::Hot) {
        eprintln!("hot path …");
        tables.push(hot(&settings).await?);
    }
    if matches!(cli.what, What::All | What::Size) {
        eprintln!("flat with size …");
        tables.push(size(&settings).await?);
    }
    if matches!(cli.what, What::All | What::Fleet) {
        eprintln!("fleet (open files limit {open_files}) …");
        let report = fleet::run(&settings.corral, &settings.fleet).await?;
        tables.push(fleet_table(&report));
    }
    let command: Vec<String> = std::env::args().skip(1).collect();
    let mut text = format!(
        "# Benchmarks\n\nMeasured by `cargo run --release -p corral-bench -- {}` \
         (crates/bench; took {:.0} s). Throughputs are medians over rounds, latencies \
         over every request of all rounds; each scenario's share is of `GET /healthz` \
         measured by the same server in the same run. What each change bought, and \
         what falls short and why: docs/performance.md.\n\n## Machine\n\n{}\n",
        command.join(" "),
        started.elapsed().as_secs_f64(),
        report::machine()
    );
    for table in &tables {
        text.push('\n');
        text.push_str(&table.markdown());
    }
    print!("{text}");
    if cli.output != "-" {
        std::fs::write(&cli.output, &text).with_context(|| format!("writing {}", cli.output))?;
        eprintln!("wrote {}", cli.output);
    }
    Ok(())
}

/// The hot path: per store, /healthz, GetRunner, ListRunners and
/// UpdateRunner interleaved over the rounds.
async fn hot(settings: &Settings) -> anyhow::Result<Table> {
    let mut results: Vec<(StoreKind, Vec<Measured>)> = Vec::new();
    for &store in &settings.stores {
        let server = Server::start(&settings.corral, store, &ServeOptions::default()).await?;
        let data = load::runners(&server, settings.hot_runners).await?;
        let token: Arc<str> = server.admin_token.as_str().into();
        let list =
            scenarios::list_runners("ListRunners (page of 25)", &token, scenarios::first_page());
        let mix = [
            scenarios::healthz(),
            scenarios::get_runner(&token, &data),
            list,
            scenarios::update_runner(&token, &data),
        ];
        let measured = scenarios::interleaved(server.port, &mix, settings.hot).await?;
        server.stop().await;
        results.push((store, measured));
    }
    let mut table = Table::new(
        "Hot path",
        vec![
            "Store",
            "Call",
            "req/s",
            "of /healthz",
            "p50 ms",
            "p99 ms",
            "errors",
            "Target",
            "Met",
        ],
    );
    table.note = format!(
        "{} runners loaded; {} HTTP/1.1 keep-alive connections, Connect JSON bodies; \
         rounds: {}, {:.1} s per scenario each (after {:.1} s warm-up), interleaved.",
        settings.hot_runners,
        settings.hot.connections,
        settings.hot.rounds,
        settings.hot.duration.as_secs_f64(),
        settings.hot.warmup.as_secs_f64()
    );
    let sqlite = results
        .iter()
        .find(|(store, _)| *store == StoreKind::Sqlite)
        .map(|(_, m)| m.clone());
    for (store, measured) in &results {
        let healthz = measured[0].rate();
        for m in measured {
            let of_healthz = share(m.rate(), healthz);
            let (target, met) = hot_target(*store, m, of_healthz, sqlite.as_deref());
            table.rows.push(vec![
                store.name().into(),
                m.name.into(),
                rate(m.rate()),
                percent(of_healthz),
                millis(m.p50_ms()),
                millis(m.p99_ms()),
                m.errors.to_string(),
                target,
                met.map_or(String::new(), |met| mark(met).into()),
            ]);
        }
    }
    Ok(table)
}

/// The target for a hot-path figure: on SQLite a share of
/// /healthz (and GetRunner's p99); on PostgreSQL reads within 2× of SQLite.
fn hot_target(
    store: StoreKind,
    m: &Measured,
    of_healthz: f64,
    sqlite: Option<&[Measured]>,
) -> (String, Option<bool>) {
    let on_sqlite = |name: &str| {
        sqlite
            .and_then(|all| all.iter().find(|s| s.name == name))
            .map(Measured::rate)
    };
    match (store, m.name) {
        (_, "GET /healthz") => ("baseline".into(), None),
        (StoreKind::Sqlite, "GetRunner") => (
            "≥ 50 %, p99 < 5 ms".into(),
            Some(of_healthz >= 0.5 && m.p99_ms() < 5.0),
        ),
        (StoreKind::Sqlite, name) if name.starts_with("ListRunners") => {
            ("≥ 30 %".into(), Some(of_healthz >= 0.3))
        }
        (StoreKind::Sqlite, _) => ("≥ 15 %".into(), Some(of_healthz >= 0.15)),
        (StoreKind::Postgres, name) if name == "GetRunner" || name.starts_with("ListRunners") => {
            match on_sqlite(name) {
                Some(sqlite_rate) => (
                    format!(
                        "within 2× of SQLite ({})",
                        times(share(sqlite_rate, m.rate()))
                    ),
                    Some(m.rate() * 2.0 >= sqlite_rate),
                ),
                None => ("within 2× of SQLite (not measured)".into(), None),
            }
        }
        (StoreKind::Postgres, _) => ("—".into(), None),
    }
}

/// Flat with size: per store and size, the lists and GetRunner; the ratio
/// is of their shares of /healthz at the small size and at the large one.
async fn size(settings: &Settings) -> anyhow::Result<Table> {
    let mut table = Table::new(
        "Flat with size",
        vec![
            "Store",
            "Call",
            "small: req/s",
            "small: of /healthz",
            "small: p99 ms",
            "large: req/s",
            "large: of /healthz",
            "large: p99 ms",
            "cost large/small",
            "Met (≤ 1.5×)",
        ],
    );
    table.note = format!(
        "small = {} runners, large = {} runners (loaded through the store API); rounds: {}, \
         {:.1} s per scenario each, {} connections. The cost ratio compares each call's share of \
         /healthz at the two sizes, so noise between the two servers cancels out. \
         The deep page is page {} of the unfiltered list, reached by following next tokens; \
         the filters select half (kind), a sixth (provider) and a tenth (creator) of the runners. \
         \"GetRunner, first read of each runner\" reads every runner once, right after loading \
         and before anything else: each is the server's first read of it, from the database \
         (one pass, timed as a whole; its share is of the /healthz rate of the rounds). \
         \"GetRunner\" then cycles through all runners, which the server keeps in memory \
         until they change (up to 128 MiB of records).",
        settings.sizes[0],
        settings.sizes[1],
        settings.size.rounds,
        settings.size.duration.as_secs_f64(),
        settings.size.connections,
        scenarios::DEEP_PAGE
    );
    for &store in &settings.stores {
        let mut at_size = Vec::new();
        for &count in &settings.sizes {
            let server = Server::start(&settings.corral, store, &ServeOptions::default()).await?;
            let data = load::runners(&server, count).await?;
            let token: Arc<str> = server.admin_token.as_str().into();
            // First, before any page or read brings runners into memory.
            let first =
                scenarios::first_reads(server.port, &token, &data, settings.size.connections)
                    .await?;
            let deep = scenarios::deep_page(server.port, &token, scenarios::DEEP_PAGE).await?;
            let mut mix = vec![
                scenarios::healthz(),
                scenarios::list_runners("ListRunners first page", &token, scenarios::first_page()),
                scenarios::list_runners("ListRunners page 40", &token, deep),
            ];
            for (name, body) in scenarios::filters(&data) {
                mix.push(scenarios::list_runners(name, &token, body));
            }
            mix.push(scenarios::get_runner(&token, &data));
            let measured = scenarios::interleaved(server.port, &mix, settings.size).await?;
            server.stop().await;
            at_size.push((measured, first));
        }
        let ((small, small_first), (large, large_first)) = (&at_size[0], &at_size[1]);
        let (small_healthz, large_healthz) = (small[0].rate(), large[0].rate());
        // (rate, p99 ms, errors) at the two sizes → one row with the cost ratio.
        let row = |name: &str, (s_rate, s_p99, _): (f64, f64, u64), (l_rate, l_p99, l_errors)| {
            let (s_share, l_share) = (share(s_rate, small_healthz), share(l_rate, large_healthz));
            let cost = share(s_share, l_share);
            vec![
                store.name().into(),
                name.into(),
                rate(s_rate),
                percent(s_share),
                millis(s_p99),
                rate(l_rate),
                percent(l_share),
                millis(l_p99),
                times(cost),
                mark(cost <= 1.5 && l_errors == 0).into(),
            ]
        };
        for (s, l) in small.iter().zip(large).skip(1) {
            table.rows.push(row(
                s.name,
                (s.rate(), s.p99_ms(), s.errors),
                (l.rate(), l.p99_ms(), l.errors),
            ));
        }
        let first =
            |sample: &http::Sample| (sample.rate(), sample.percentile_ms(0.99), sample.errors);
        table.rows.push(row(
            "GetRunner, first read of each runner",
            first(small_first),
            first(large_first),
        ));
        table.rows.push(vec![
            store.name().into(),
            "GET /healthz (baseline)".into(),
            rate(small_healthz),
            String::new(),
            millis(small[0].p99_ms()),
            rate(large_healthz),
            String::new(),
            millis(large[0].p99_ms()),
            String::new(),
            String::new(),
        ]);
    }
    Ok(table)
}

fn fleet_table(r: &fleet::FleetReport) -> Table {
    let mut table = Table::new("Fleet (SQLite)", vec!["Measure", "Value", "Target", "Met"]);
    table.note = format!(
        "{} simulated runners (they and their access tokens written through the store API, as \
         the token exchange stores them), each with its own HTTP/2 connection \
         carrying its WatchRequests stream and its ReportStatus heartbeats; `corral serve \
         --runner-grace {}s` (so runners heartbeat every {} s). Measured over a steady window \
         of {:.0} s after all had connected, with a GetRunner probe of 20 requests/s beside them.",
        r.runners,
        r.grace.as_secs(),
        r.heartbeat_interval.as_secs(),
        r.window.as_secs_f64()
    );
    let row = |measure: &str, value: String, target: &str, met: Option<bool>| {
        vec![
            measure.to_string(),
            value,
            target.to_string(),
            met.map_or(String::new(), |m| mark(m).into()),
        ]
    };
    let hb_p99 = r.heartbeats.percentile_ms(0.99);
    let probe_p99 = r.probe.percentile_ms(0.99);
    let max_delivery = r.change_delivery.max() as f64 / 1e6;
    let detection_limit = r.grace + r.sweep_period + Duration::from_secs(1);
    let detections: Vec<String> = r
        .killed_detection
        .iter()
        .map(|d| d.map_or("never".into(), |d| format!("{:.1} s", d.as_secs_f64())))
        .collect();
    table.rows = vec![
        row(
            "all runners connected (sign-up, first report, stream)",
            format!(
                "{:.1} s, {} failed",
                r.connect_time.as_secs_f64(),
                r.connect_failures
            ),
            "",
            Some(r.connect_failures == 0),
        ),
        row(
            "server RSS (max in window / at end)",
            format!("{} / {}", report::mib(r.rss_max), report::mib(r.rss_end)),
            "< 512 MB",
            Some(r.rss_max < 512 * 1000 * 1000),
        ),
        row(
            "server CPU (average over window)",
            format!("{:.2} cores", r.cores),
            "< 0.5 core",
            Some(r.cores < 0.5),
        ),
        row(
            "heartbeat (ReportStatus) p50 / p99",
            format!(
                "{} / {} ms ({} beats, {} failed)",
                millis(r.heartbeats.percentile_ms(0.5)),
                millis(hb_p99),
                r.heartbeats.requests,
                r.heartbeat_failures
            ),
            "p99 < 20 ms",
            Some(hb_p99 < 20.0 && r.heartbeat_failures == 0),
        ),
        row(
            "GetRunner p50 / p99 meanwhile",
            format!(
                "{} / {} ms ({} requests)",
                millis(r.probe.percentile_ms(0.5)),
                millis(probe_p99),
                r.probe.requests
            ),
            "p99 < 10 ms",
            Some(probe_p99 < 10.0 && r.probe.errors == 0),
        ),
        row(
            "spec change delivered over the stream (UpdateRunner sent → received) p99 / max",
            format!(
                "{} / {} ms, {} of {} delivered",
                millis(r.change_delivery.value_at_quantile(0.99) as f64 / 1000.0),
                millis(max_delivery * 1000.0),
                r.changes_delivered,
                r.changes
            ),
            "all within 5 s",
            Some(r.changes_delivered == r.changes && max_delivery <= 5.0),
        ),
        row(
            "killed runners INACTIVE after their last heartbeat",
            detections.join(", "),
            &format!(
                "grace {} s (+ sweep every {:.0} s)",
                r.grace.as_secs(),
                r.sweep_period.as_secs_f64()
            ),
            Some(
                r.killed_detection
                    .iter()
                    .all(|d| d.is_some_and(|d| d <= detection_limit)),
            ),
        ),
    ];
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str]) -> Settings {
        let mut argv = vec!["corral-bench"];
        argv.extend(args);
        Cli::try_parse_from(argv).unwrap().settings().unwrap()
    }

    #[test]
    fn quick_shrinks_sizes_and_flags_override_it() {
        let full = settings(&["all"]);
        assert_eq!(full.sizes, [1000, 100_000]);
        assert_eq!(full.fleet.runners, 10_000);
        assert_eq!(full.stores, [StoreKind::Sqlite, StoreKind::Postgres]);
        assert_eq!(full.hot.connections, 8);

        let quick = settings(&[
            "--quick",
            "hot",
            "--stores",
            "postgres,postgres",
            "--rounds",
            "4",
        ]);
        assert_eq!(quick.sizes, [1000, 5000]);
        assert_eq!(quick.fleet.runners, 500);
        assert_eq!(quick.stores, [StoreKind::Postgres]);
        assert_eq!(quick.hot.rounds, 4);
    }

    #[test]
    fn sizes_are_two_and_large_enough_for_the_deep_page() {
        let sized = settings(&["size", "--sizes", "2000,20000"]);
        assert_eq!(sized.sizes, [2000, 20_000]);
        for sizes in ["100,1000", "1000", "1000,2000,3000"] {
            let cli = Cli::try_parse_from(["corral-bench", "size", "--sizes", sizes]).unwrap();
            assert!(cli.settings().is_err(), "{sizes}");
        }
    }
}
