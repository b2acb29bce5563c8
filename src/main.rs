//! The `kairos` binary: parse the command line, load settings, run.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use kairos::{app::Application, config::Settings, db, seed, telemetry};

#[derive(Parser)]
#[command(
    name = "kairos",
    version,
    about = "GraphQL backend for learning platforms"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API on BIND_ADDR.
    Serve,
    /// Create (apply) or verify (check) the indexes of indexes/*.json.
    Indexes {
        #[command(subcommand)]
        action: IndexAction,
        /// Read the declarations from this folder instead of the built-in ones.
        #[arg(long, global = true)]
        dir: Option<PathBuf>,
    },
    /// Load deterministic demo data.
    Seed(seed::SeedOptions),
    /// Print the schema's SDL.
    Schema,
}

#[derive(Subcommand, Clone, Copy)]
enum IndexAction {
    /// Create what is missing; leave what matches alone.
    Apply,
    /// Change nothing; exit non-zero on any drift.
    Check,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Schema = cli.command {
        print!("{}", kairos::schema::sdl());
        return ExitCode::SUCCESS;
    }
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kairos: configuration error: {e:#}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(settings.log_format);
    match run(cli.command, settings).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kairos: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve => {
            Application::build(settings)
                .await?
                .run_until_stopped()
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Indexes { action, dir } => {
            let database = db::Db::connect(&settings.mongo).await?;
            database
                .ping()
                .await
                .map_err(|_| anyhow::anyhow!("MongoDB did not answer (MONGODB_URI)"))?;
            let ttl = i64::from(settings.activity_retention_days) * 86_400;
            let decls = db::indexes::load(dir.as_deref(), ttl)?;
            let apply = matches!(action, IndexAction::Apply);
            let report = db::indexes::reconcile(&database, &decls, apply).await;
            database.shutdown().await;
            let report = report?;
            for line in &report {
                println!("{:<14} {:<34} {}", line.collection, line.name, line.outcome);
            }
            let drift = report.iter().filter(|l| l.outcome.is_drift()).count();
            let failed = report
                .iter()
                .filter(|l| {
                    matches!(
                        l.outcome,
                        db::indexes::Outcome::Failed(_) | db::indexes::Outcome::Conflicting(_)
                    )
                })
                .count();
            let bad = if apply { failed } else { drift };
            if bad > 0 {
                eprintln!("kairos: {bad} index(es) need attention");
                Ok(ExitCode::FAILURE)
            } else {
                Ok(ExitCode::SUCCESS)
            }
        }
        Command::Seed(opts) => {
            let database = db::Db::connect(&settings.mongo).await?;
            let started = std::time::Instant::now();
            let r = seed::seed(&database, &opts).await;
            database.shutdown().await;
            let r = r?;
            println!(
                "seeded {} users, {} modules, {} progress, {} activity, {} notifications in {:.1}s",
                r.users,
                r.modules,
                r.progress,
                r.activity,
                r.notifications,
                started.elapsed().as_secs_f64()
            );
            println!(
                "log in as {} (admin) or learner000001, password {}",
                seed::DEMO_ADMIN,
                seed::DEMO_PASSWORD
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema => unreachable!("handled before settings are loaded"),
    }
}
