//! `specwatch-train`: makes the datasets (and, later, the models) the station runs on.
//!
//! A thin entry point: parses the command line, calls the library, prints the error chain and
//! exits non-zero on failure.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use specwatch::dsp::array::ArrayGeometry;
use specwatch::iq::dataset::{Dataset, Manifest};
use specwatch::iq::radioml::{self, ImportOptions, ImportStage};
use specwatch::synth::RecipeOptions;
use specwatch::synth::generate::{GenerateSpec, generate_dataset, parse_snr_grid};
use specwatch::synth::recipe::Recipe;

#[derive(Parser)]
#[command(
    name = "specwatch-train",
    version,
    about = "Make specwatch's datasets and models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a dataset folder from a published recipe.
    Gen(GenArgs),
    /// Convert a public RadioML file (2016.10a/b pickle, 2018.01A HDF5) into a dataset folder.
    ImportRadioml(ImportArgs),
    /// Check a dataset folder and print what it holds.
    Inspect {
        /// The dataset folder.
        dir: PathBuf,
    },
}

#[derive(clap::Args)]
struct GenArgs {
    /// Recipe: rml2016a, rml2018a, zsl7 or aoa4.
    #[arg(long)]
    recipe: String,
    /// Output folder (created; an existing dataset there is replaced).
    #[arg(long)]
    out: PathBuf,
    /// Windows per class and SNR (default: the recipe's).
    #[arg(long)]
    per_class_snr: Option<usize>,
    /// SNR grid in dB as MIN:MAX:STEP, both ends included (default: the recipe's).
    #[arg(long, allow_hyphen_values = true)]
    snr: Option<String>,
    /// Seed; the same seed, recipe and options give the same data on any machine.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A WAV file for the analog classes instead of the built-in speech-like source.
    #[arg(long)]
    wav: Option<PathBuf>,
    /// Array geometry of a multi-channel recipe: ula, ura or uca.
    #[arg(long)]
    array: Option<String>,
    /// Number of array elements (with --array).
    #[arg(long, default_value_t = 4)]
    elements: usize,
    /// Element spacing in wavelengths (with --array).
    #[arg(long, default_value_t = 0.5)]
    spacing: f64,
    /// Per-element gain and phase errors.
    #[arg(long)]
    element_errors: bool,
    /// Coherent multipath from other directions.
    #[arg(long)]
    multipath: bool,
    /// Oscillator phase noise.
    #[arg(long)]
    phase_noise: bool,
    /// Receiver IQ imbalance.
    #[arg(long)]
    iq_imbalance: bool,
    /// A random receiver gain per window.
    #[arg(long)]
    random_gain: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct ImportArgs {
    /// RML2016.10a_dict.pkl, RML2016.10b.dat or GOLD_XYZ_OSC.0001_1024.hdf5.
    file: PathBuf,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Keep at most this many windows per class and SNR.
    #[arg(long)]
    max_per_class_snr: Option<usize>,
    /// Class names of the file's one-hot columns (2018.01A), comma-separated, overriding the
    /// built-in order.
    #[arg(long, value_delimiter = ',')]
    classes: Option<Vec<String>>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("specwatch-train: error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, `outer: inner: …`, leaving out a cause whose text the
/// message before it already includes (many library errors quote their source).
fn error_chain(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Gen(args) => generate(args),
        Command::ImportRadioml(args) => import(args),
        Command::Inspect { dir } => inspect(&dir),
    }
}

fn progress_bar(total: usize, quiet: bool, what: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} windows ({per_sec}, eta {eta})",
        )
        .expect("valid progress template"),
    );
    bar.set_message(what.to_string());
    bar
}

fn generate(args: GenArgs) -> anyhow::Result<()> {
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("setting up the worker threads")?;
    }
    let array = args
        .array
        .as_deref()
        .map(|kind| ArrayGeometry::from_kind(kind, args.elements, args.spacing))
        .transpose()?;
    let options = RecipeOptions {
        wav: args.wav,
        array,
        element_errors: args.element_errors,
        multipath: args.multipath,
        phase_noise: args.phase_noise,
        iq_imbalance: args.iq_imbalance,
        random_gain: args.random_gain,
    };
    let recipe = Recipe::by_name(&args.recipe, &options, args.seed)?;
    let grid = args.snr.as_deref().map(parse_snr_grid).transpose()?;
    let spec = GenerateSpec::for_recipe(&recipe, args.per_class_snr, grid, args.seed)?;
    let total = spec.total(recipe.classes.len());
    let bar = progress_bar(total, args.quiet, &recipe.name);
    let started = Instant::now();
    let manifest = generate_dataset(&recipe, &spec, &args.out, &|n| bar.set_position(n as u64))
        .with_context(|| format!("generating {} into {}", recipe.name, args.out.display()))?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    print_summary(&args.out, &manifest);
    println!(
        "generated {} windows in {secs:.2} s ({:.0} windows/s)",
        manifest.count,
        manifest.count as f64 / secs
    );
    Ok(())
}

fn import(args: ImportArgs) -> anyhow::Result<()> {
    let bar = progress_bar(0, args.quiet, "scanning");
    let progress_bar = bar.clone();
    let options = ImportOptions {
        max_per_class_snr: args.max_per_class_snr,
        classes: args.classes,
        progress: Some(Box::new(move |p| {
            progress_bar.set_message(match p.stage {
                ImportStage::Scanning => "scanning",
                ImportStage::Writing => "writing",
            });
            progress_bar.set_length(p.total);
            progress_bar.set_position(p.done);
        })),
    };
    let manifest = radioml::import(&args.file, &args.out, &options)
        .with_context(|| format!("importing {}", args.file.display()))?;
    bar.finish_and_clear();
    print_summary(&args.out, &manifest);
    Ok(())
}

fn inspect(dir: &std::path::Path) -> anyhow::Result<()> {
    let dataset = Dataset::open(dir)?;
    // Touch the label and SNR files too, so a broken one is reported here.
    dataset.labels()?;
    dataset.snr_db()?;
    dataset.angles_deg()?;
    print_summary(dir, &dataset.manifest);
    Ok(())
}

fn print_summary(dir: &std::path::Path, m: &Manifest) {
    let digest = Manifest::digest_of_file(dir).unwrap_or_else(|e| format!("(unreadable: {e})"));
    println!(
        "{}: {} windows × {} channel(s) × {} samples, {} classes, {} SNR points [{} .. {}] dB{}",
        dir.display(),
        m.count,
        m.channels,
        m.window_len,
        m.classes.len(),
        m.snr_grid_db.len(),
        m.snr_grid_db.first().copied().unwrap_or(f32::NAN),
        m.snr_grid_db.last().copied().unwrap_or(f32::NAN),
        if m.has_angles { ", with angles" } else { "" }
    );
    println!("classes: {}", m.classes.join(", "));
    println!("manifest sha256: {digest}");
}
