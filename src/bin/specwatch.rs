//! `specwatch`: the station daemon and its tools. Thin: parses the command line and calls
//! [`specwatch::daemon`].

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "specwatch",
    version,
    about = "Spectrum-monitoring station: classify and locate signals live or in recordings"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the station: flowgraph, detection store, HTTP API (until SIGTERM/SIGINT).
    Run {
        /// Station config (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config exactly as start-up does: sources, models (loaded), store (opened).
    Check {
        /// Station config (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run a capture through the flowgraph as fast as possible and print every detection.
    Replay {
        /// The capture: `.npy` (with its optional `.json` sidecar) or SigMF.
        capture: PathBuf,
        /// Take runtime, gate and models from this config (its sources are replaced).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// A model card to run (repeatable); replaces the config's models.
        #[arg(long = "model", short)]
        models: Vec<PathBuf>,
        /// Samples between window starts (default: the window length).
        #[arg(long)]
        hop: Option<usize>,
        /// One JSON object per line per detection, then a summary line.
        #[arg(long)]
        json: bool,
    },
    /// List the receivers this build can reach (UHD, Soapy).
    Devices,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr; a replay's detections go to stdout.
    specwatch::telemetry::init_logging();
    let result = match cli.command {
        Command::Run { config } => specwatch::daemon::run(&config),
        Command::Check { config } => specwatch::daemon::check(&config).map(|report| {
            println!("{report}");
        }),
        Command::Replay {
            capture,
            config,
            models,
            hop,
            json,
        } => {
            let req = specwatch::daemon::ReplayRequest {
                capture: capture.clone(),
                config,
                models,
                hop,
            };
            specwatch::daemon::replay(&req).and_then(|outcome| {
                let mut out = std::io::stdout().lock();
                specwatch::daemon::write_replay(&mut out, &capture, &outcome, json)?;
                out.flush()?;
                Ok(())
            })
        }
        Command::Devices => {
            for line in specwatch::daemon::devices() {
                println!("{line}");
            }
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("specwatch: {e:#}");
            ExitCode::FAILURE
        }
    }
}
