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
    /// Cut labelled recordings (NAME.npy + sidecar NAME.json each) into windows as a dataset
    /// folder that remembers each window's recording, so training splits by recording.
    #[command(long_about = RECORDINGS_HELP)]
    ImportRecordings(RecordingsArgs),
    /// Check a dataset folder and print what it holds.
    Inspect {
        /// The dataset folder.
        dir: PathBuf,
    },
    /// Train a model on a dataset folder into a run folder.
    #[cfg(feature = "train")]
    Train(Box<TrainArgs>),
    /// Export a trained run to models/NAME.onnx + models/NAME.json (the model card), measuring
    /// its test-split accuracy through ONNX Runtime.
    #[cfg(feature = "train")]
    Export(ExportArgs),
    /// Evaluate an exported model on a dataset folder: accuracy overall, per SNR and per class,
    /// and the confusion matrix (classes matched by name).
    #[cfg(feature = "train")]
    Eval(EvalArgs),
    /// Compose a base classifier and a specialist in some of its classes into one model whose
    /// graph runs both: the base's probability of those classes split by both models' opinions.
    #[cfg(feature = "train")]
    Compose(ComposeArgs),
    /// Fit heads (prototype, k-NN, linear) on a trained encoder's features of a dataset, over
    /// repeated draws of N labelled windows per class and SNR: test accuracy, mean ± sd.
    #[cfg(feature = "train")]
    Probe(ProbeArgs),
}

#[cfg(feature = "train")]
#[derive(clap::Args)]
struct ProbeArgs {
    /// The encoder's run folder (its best weights; the classifier head is not used).
    #[arg(long)]
    encoder: PathBuf,
    /// The dataset folder (its classes may differ from the encoder's).
    #[arg(long)]
    data: PathBuf,
    /// Heads, comma-separated: prototype, knn, linear [default: all three].
    #[arg(long, value_delimiter = ',')]
    heads: Option<Vec<String>>,
    /// Neighbours that vote in the k-NN head.
    #[arg(long, default_value_t = 5)]
    k: usize,
    /// Labelled windows per class and SNR cell of the training split [default: all of it].
    #[arg(long, value_name = "N")]
    labelled_per_cell: Option<usize>,
    /// Draws of the labelled windows (seeds --seed, --seed + 1, …).
    #[arg(long, default_value_t = 1)]
    repeats: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

#[cfg(feature = "train")]
#[derive(clap::Args)]
struct ComposeArgs {
    /// The base model's card (models/NAME.json): all classes.
    #[arg(long)]
    base: PathBuf,
    /// The specialist's card: two or more of the base's classes, matched by name.
    #[arg(long)]
    specialist: PathBuf,
    /// Destination stem: models/NAME writes models/NAME.onnx and models/NAME.json.
    #[arg(long)]
    out: PathBuf,
    /// Model name in the card [default: the file name of --out].
    #[arg(long)]
    name: Option<String>,
    /// Model version in the card.
    #[arg(long, default_value = "0.1.0")]
    version: String,
    /// A freshly generated dataset folder, on which neither model was trained, to measure the
    /// composed model on (its figures go into the card).
    #[arg(long)]
    data: PathBuf,
    /// The ONNX Runtime library (libonnxruntime.so*) [default: ORT_DYLIB_PATH or well-known
    /// places].
    #[arg(long)]
    ort_library: Option<PathBuf>,
}

#[cfg(feature = "train")]
#[derive(clap::Args)]
struct ExportArgs {
    /// The run folder (config.json, split.json, best.bpk).
    #[arg(long)]
    run: PathBuf,
    /// Destination stem: models/NAME writes models/NAME.onnx and models/NAME.json.
    #[arg(long)]
    out: PathBuf,
    /// Model name in the card [default: the file name of --out].
    #[arg(long)]
    name: Option<String>,
    /// Model version in the card.
    #[arg(long, default_value = "0.1.0")]
    version: String,
    /// The dataset folder, when it has moved since training (same manifest required).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Nominal sample rate (Hz) for the card when the dataset manifest has none.
    #[arg(long)]
    sample_rate_hz: Option<f64>,
    /// The ONNX Runtime library (libonnxruntime.so*) [default: ORT_DYLIB_PATH or well-known
    /// places].
    #[arg(long)]
    ort_library: Option<PathBuf>,
}

#[cfg(feature = "train")]
#[derive(clap::Args)]
struct EvalArgs {
    /// The model card (models/NAME.json), or its .onnx file with the card beside it.
    #[arg(long)]
    model: PathBuf,
    /// The dataset folder.
    #[arg(long)]
    data: PathBuf,
    /// Also write a report folder: eval.json, report.md, accuracy_vs_snr.png and confusion.png
    /// (models with a class output), mae_vs_snr.png (models with angle outputs).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Print exactly one JSON object on stdout instead of the tables.
    #[arg(long)]
    json: bool,
    /// Windows per inference batch.
    #[arg(long, default_value_t = specwatch::train::eval::DEFAULT_BATCH)]
    batch: usize,
    /// Evaluate at most N windows, taken as evenly spaced runs across the dataset.
    #[arg(long)]
    max_windows: Option<usize>,
    /// Execution provider: auto, cpu, cuda or cuda:ID.
    #[arg(long, default_value = "auto")]
    provider: String,
    /// ONNX Runtime threads inside one operator (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// The ONNX Runtime library (default: ORT_DYLIB_PATH, then the well-known places).
    #[arg(long)]
    ort_library: Option<PathBuf>,
    /// For a model with an SNR input: feed the dataset's true SNR instead of the estimate the
    /// daemon computes from each window.
    #[arg(long)]
    true_snr: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[cfg(feature = "train")]
#[derive(clap::Args)]
struct TrainArgs {
    /// Architecture: vtcnn2, resnet1d, cldnn, gru2 or transformer.
    #[arg(long)]
    arch: Option<String>,
    /// The dataset folder.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Run folder: config.json, split.json, metrics.jsonl, best.bpk, checkpoint/.
    #[arg(long)]
    out: PathBuf,
    /// Total epochs [default: 30].
    #[arg(long)]
    epochs: Option<usize>,
    /// Windows per batch [default: 256].
    #[arg(long)]
    batch: Option<usize>,
    /// Peak learning rate of the cosine schedule [default: 0.001].
    #[arg(long)]
    lr: Option<f64>,
    /// Weight decay; with Adam, above 0 trains with AdamW (decoupled) [default: 0].
    #[arg(long)]
    weight_decay: Option<f64>,
    /// The optimiser: adam, sgd, lamb, lars, or JSON with its settings, e.g.
    /// {"name":"sgd","momentum":0.9,"nesterov":true} [default: adam].
    #[arg(long, value_name = "NAME|JSON")]
    optimizer: Option<String>,
    /// Dropout probability [default: 0.5].
    #[arg(long)]
    dropout: Option<f64>,
    /// Multiplier of every layer's width, 1 = as published [default: 1].
    #[arg(long)]
    width: Option<f64>,
    /// An option of the architecture's own, KEY=VALUE (repeatable; the value is read as JSON
    /// when it is JSON, else as text). resnet1d: depth=N residual blocks per stage (1 as
    /// published; with --init-from, a shallower model is carried over and each added block
    /// starts as the identity), amplitude_rows=true (the stem also sees each channel's
    /// amplitude √(I²+Q²), computed inside the model from iq input; with --init-from, a model
    /// without them is carried over with the stem's weights for them at 0). An unknown key is
    /// refused with the architecture's list.
    #[arg(long = "arch-opt", value_name = "KEY=VALUE")]
    arch_opt: Vec<String>,
    /// The objective as JSON, a file holding it, or a kind's name with its defaults
    /// (classify, multitask, moco_v3) [default: {"kind":"classify","loss":
    /// {"name":"cross_entropy"}}]; e.g. focal loss: {"kind":"classify","loss":{"name":"focal",
    /// "gamma":2}}; MoCo v3 pretraining: {"kind":"moco_v3","temperature":{"min":0.1,"max":0.2}}.
    #[arg(long, value_name = "JSON|FILE")]
    objective: Option<String>,
    /// Augmentations of the raw training windows, as a JSON list or a file holding one, e.g.
    /// [{"kind":"awgn","p":0.5,"min_snr_db":0,"max_snr_db":20},{"kind":"phase_rotation",
    /// "p":1,"max_deg":180}] (kinds: see the augment module documentation) [default: none].
    #[arg(long, value_name = "JSON|FILE")]
    augment: Option<String>,
    /// Which training windows an epoch visits: shuffle (each once) or balanced (every class
    /// and SNR cell equally often) [default: shuffle].
    #[arg(long)]
    sampling: Option<String>,
    /// Train on only N labelled windows of each class and SNR cell of the training split
    /// (label-budget and few-shot runs; drawn with --seed).
    #[arg(long, value_name = "N")]
    labelled_per_cell: Option<usize>,
    /// Same as --arch-opt depth=N (the spelling of earlier recorded commands).
    #[arg(long, hide = true)]
    depth: Option<usize>,
    /// Same as --arch-opt amplitude_rows=true (the spelling of earlier recorded commands).
    #[arg(long, hide = true)]
    amplitude_rows: bool,
    /// Epochs without a lower validation loss before stopping [default: 5].
    #[arg(long)]
    patience: Option<usize>,
    /// Seed of initialisation, split, shuffling and dropout [default: 1].
    #[arg(long)]
    seed: Option<u64>,
    /// Use only the first N windows (a balanced prefix of the dataset).
    #[arg(long)]
    max_windows: Option<usize>,
    /// Where the raw windows live while training: memory (read once) or stream (read from
    /// x.npy per batch, for sets larger than memory) [default: memory]. Either trains the same.
    #[arg(long)]
    residency: Option<String>,
    /// Normalisation: none, unit_rms, l1 or peak [default: unit_rms].
    #[arg(long)]
    normalization: Option<String>,
    /// Representation: iq, amp_phase, inst_freq, fft or fft_log_mag [default: iq].
    #[arg(long)]
    representation: Option<String>,
    /// Start from the best weights of this earlier run folder, or from this exported model
    /// (models/NAME.json; its weights are read back from NAME.onnx), instead of a random
    /// initialisation. Same architecture, width, input and classes (a resnet1d may gain
    /// depth and amplitude rows); optimiser and schedule start afresh.
    #[arg(long, value_name = "RUN_DIR|MODEL.json")]
    init_from: Option<PathBuf>,
    /// Start only the embedding layers from this earlier run folder or exported model (same
    /// architecture, width, options and input; its classes may differ), with a fresh
    /// classifier head for this dataset's classes. With {"kind":"classify",
    /// "freeze_encoder":true} as --objective, a linear probe of that encoder.
    #[arg(long, value_name = "RUN_DIR|MODEL.json")]
    encoder_from: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint (up to --epochs in total).
    #[arg(long)]
    resume: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
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
    /// What --snr and snr.npy mean: true (the true per-window SNR) or radioml (RadioML 2016.10a's
    /// nominal label, noise set as its published script did; the true SNR goes to
    /// snr_true.npy). radioml applies to rml2016a only.
    #[arg(long, default_value = "true", value_name = "true|radioml")]
    snr_convention: String,
    /// Only these of the recipe's classes, comma-separated (e.g. QAM16,QAM64 for a specialist
    /// between the two); they keep the recipe's order.
    #[arg(long, value_delimiter = ',')]
    classes: Option<Vec<String>>,
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
        Command::ImportRecordings(args) => import_recordings(args),
        Command::Inspect { dir } => inspect(&dir),
        #[cfg(feature = "train")]
        Command::Train(args) => train(*args),
        #[cfg(feature = "train")]
        Command::Export(args) => export(args),
        #[cfg(feature = "train")]
        Command::Eval(args) => eval(args),
        #[cfg(feature = "train")]
        Command::Compose(args) => compose(args),
        #[cfg(feature = "train")]
        Command::Probe(args) => probe(args),
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
    let mut recipe = Recipe::by_name(&args.recipe, &options, args.seed)?;
    recipe.set_snr_convention(args.snr_convention.parse()?)?;
    if let Some(names) = &args.classes {
        recipe.keep_classes(names)?;
    }
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

const RECORDINGS_HELP: &str = "\
Cut labelled recordings into windows as a dataset folder that remembers each window's recording.

Each recording is NAME.npy, complex64 or complex128, shape (channels, samples) or (samples,) (read
in chunks, never whole), with its sidecar NAME.json beside it. Of the sidecar, `truth` is required:
spans {class, snr_db, azimuth_deg?, elevation_deg?, sample_start, sample_count} on every channel (no
`channel` field), not overlapping; usually one span covers the whole recording. Windows are cut only
from inside a span, every --hop samples from its start, and take its class, SNR and angles. Angles
must be on every span or on none (elevation 0 when only azimuth is given). `sample_rate_hz` and
`array` are copied into the manifest and must agree between recordings. Every recording must have
the same number of channels and yield at least one window.

The folder --out holds x.npy complex64 (N, channels, window-len), y.npy, snr.npy, angles.npy (with
angles) and recording.npy int64 (N,): each window's index into the manifest's source.recordings
(kind `recordings`: file, samples, windows). `train` then splits whole recordings into
train/validation/test, stratified by class, so no recording has windows on two sides.
Recordings are written whole, round-robin over class, so --max-windows takes whole recordings of
every class.";

#[derive(clap::Args)]
struct RecordingsArgs {
    /// Recording files (NAME.npy) or folders of them (their .npy files, sorted by name).
    #[arg(required = true, value_name = "RECORDING|FOLDER")]
    recordings: Vec<PathBuf>,
    /// Output folder (created; an existing dataset there is replaced).
    #[arg(long)]
    out: PathBuf,
    /// Samples per window and channel.
    #[arg(long, default_value_t = specwatch::iq::recordings::DEFAULT_WINDOW_LEN)]
    window_len: usize,
    /// Samples between window starts [default: --window-len, no overlap].
    #[arg(long)]
    hop: Option<usize>,
    /// Keep at most N windows of each recording, spread evenly over it.
    #[arg(long, value_name = "N")]
    max_windows_per_recording: Option<usize>,
    /// Class names in label order, comma-separated; must name every class the sidecars use
    /// [default: the sidecars' classes sorted by name].
    #[arg(long, value_delimiter = ',')]
    classes: Option<Vec<String>>,
    /// Each window's SNR: sidecar (the span's snr_db) or estimate (the daemon's estimator,
    /// dsp::snr::window_snr_db, per window); the manifest's snr_definition says which.
    #[arg(long, default_value = "sidecar")]
    snr: String,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn import_recordings(args: RecordingsArgs) -> anyhow::Result<()> {
    use specwatch::iq::recordings::{ConvertOptions, convert, list_recordings};

    let files = list_recordings(&args.recordings)?;
    let bar = progress_bar(0, args.quiet, "cutting");
    let progress_bar = bar.clone();
    let options = ConvertOptions {
        window_len: args.window_len,
        hop: args.hop,
        max_windows_per_recording: args.max_windows_per_recording,
        classes: args.classes,
        snr: args.snr.parse()?,
        progress: Some(Box::new(move |p| {
            progress_bar.set_length(p.total);
            progress_bar.set_position(p.done);
        })),
    };
    let manifest = convert(&files, &args.out, &options).with_context(|| {
        format!(
            "cutting {} recording(s) into {}",
            files.len(),
            args.out.display()
        )
    })?;
    bar.finish_and_clear();
    print_summary(&args.out, &manifest);
    let recordings = manifest.recordings().map_or(0, <[_]>::len);
    println!("recordings: {recordings} (recording.npy gives each window's)");
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

#[cfg(feature = "train")]
fn train(args: TrainArgs) -> anyhow::Result<()> {
    use specwatch::train::data::{parse_normalization, parse_representation};
    use specwatch::train::fit::{FitOptions, TrainConfig, fit};

    let mut config = if args.resume {
        // The run's own settings; only the epoch count and patience may change.
        let fixed = [
            ("--batch", args.batch.is_some()),
            ("--lr", args.lr.is_some()),
            ("--weight-decay", args.weight_decay.is_some()),
            ("--optimizer", args.optimizer.is_some()),
            ("--dropout", args.dropout.is_some()),
            ("--width", args.width.is_some()),
            ("--arch-opt", !args.arch_opt.is_empty()),
            ("--objective", args.objective.is_some()),
            ("--augment", args.augment.is_some()),
            ("--sampling", args.sampling.is_some()),
            ("--labelled-per-cell", args.labelled_per_cell.is_some()),
            ("--depth", args.depth.is_some()),
            ("--amplitude-rows", args.amplitude_rows),
            ("--seed", args.seed.is_some()),
            ("--max-windows", args.max_windows.is_some()),
            ("--normalization", args.normalization.is_some()),
            ("--representation", args.representation.is_some()),
            ("--init-from", args.init_from.is_some()),
            ("--encoder-from", args.encoder_from.is_some()),
        ];
        if let Some((flag, _)) = fixed.iter().find(|(_, given)| *given) {
            anyhow::bail!(
                "{flag} is not accepted with --resume: a resumed run keeps the settings in {} \
                 (only --epochs, --patience and --residency may be given)",
                args.out.join("config.json").display()
            );
        }
        let mut config = TrainConfig::load(&args.out)
            .with_context(|| format!("resuming the run in {}", args.out.display()))?;
        if let Some(v) = &args.residency {
            config.prep.residency = v.parse()?;
        }
        if let Some(arch) = &args.arch
            && *arch != config.arch
        {
            anyhow::bail!(
                "--arch is '{arch}' but the run in {} trains '{}'",
                args.out.display(),
                config.arch
            );
        }
        if let Some(data) = &args.data
            && *data != config.data
        {
            anyhow::bail!(
                "--data is {} but the run in {} trains on {}",
                data.display(),
                args.out.display(),
                config.data.display()
            );
        }
        config
    } else {
        let arch = args
            .arch
            .as_deref()
            .context("--arch is required (e.g. --arch vtcnn2)")?;
        let data = args
            .data
            .as_deref()
            .context("--data is required (a dataset folder)")?;
        let mut config = TrainConfig::new(arch, data);
        if let Some(v) = args.batch {
            config.batch_size = v;
        }
        if let Some(v) = args.lr {
            config.lr = v;
        }
        if let Some(v) = args.weight_decay {
            config.weight_decay = v;
        }
        if let Some(text) = &args.optimizer {
            let json = if text.trim_start().starts_with('{') {
                text.clone()
            } else {
                format!("{{\"name\":{}}}", serde_json::Value::String(text.clone()))
            };
            config.optimizer = serde_json::from_str(&json).map_err(|e| {
                anyhow::anyhow!(
                    "--optimizer is '{text}': {e}; expected adam, sgd, lamb, lars or JSON such as \
                     {{\"name\":\"sgd\",\"momentum\":0.9}}"
                )
            })?;
        }
        if let Some(v) = args.dropout {
            config.dropout = v;
        }
        if let Some(v) = args.width {
            config.width = v;
        }
        let mut pairs = args.arch_opt.clone();
        if let Some(v) = args.depth {
            pairs.push(format!("depth={v}"));
        }
        if args.amplitude_rows {
            pairs.push("amplitude_rows=true".into());
        }
        config.arch_options = specwatch::train::models::parse_arch_opts(&pairs)?;
        if let Some(text) = &args.objective {
            config.objective = json_setting("--objective", text, OBJECTIVE_EXAMPLE, Some("kind"))?;
        }
        if let Some(text) = &args.augment {
            config.augment = json_setting("--augment", text, AUGMENT_EXAMPLE, None)?;
        }
        if let Some(v) = &args.sampling {
            config.sampling = serde_json::from_value(serde_json::Value::String(v.clone()))
                .map_err(|_| {
                    anyhow::anyhow!("--sampling is '{v}'; expected shuffle or balanced")
                })?;
        }
        config.labelled_per_cell = args.labelled_per_cell;
        if let Some(v) = args.seed {
            config.seed = v;
        }
        config.prep.max_windows = args.max_windows;
        if let Some(v) = &args.residency {
            config.prep.residency = v.parse()?;
        }
        if let Some(v) = &args.normalization {
            config.prep.normalization = parse_normalization(v)?;
        }
        if let Some(v) = &args.representation {
            config.prep.representation = parse_representation(v)?;
        }
        config.init_from = args.init_from.clone();
        config.encoder_from = args.encoder_from.clone();
        config
    };
    if let Some(v) = args.epochs {
        config.epochs = v;
    }
    if let Some(v) = args.patience {
        config.patience = v;
    }

    let options = FitOptions {
        resume: args.resume,
        progress: !args.quiet,
    };
    let report = fit(&config, &args.out, options, &mut |m| {
        println!(
            "epoch {:>3}: train loss {:.4} acc {:.2}% | val loss {:.4} acc {:.2}% | lr {:.2e} | \
             {:.0} samples/s | {:.1} s{}",
            m.epoch,
            m.train_loss,
            100.0 * m.train_acc,
            m.val_loss,
            100.0 * m.val_acc,
            m.lr,
            m.train_samples_per_s,
            m.seconds,
            if m.best { " *" } else { "" }
        );
    })
    .with_context(|| format!("training {} into {}", config.arch, args.out.display()))?;
    println!(
        "{}: epoch {} of {}, best validation loss {:.4} at epoch {}{}",
        args.out.display(),
        report.last_epoch,
        config.epochs,
        report.best_val_loss,
        report.best_epoch,
        if report.stopped_early {
            " (stopped early)"
        } else {
            ""
        }
    );
    Ok(())
}

#[cfg(feature = "train")]
const OBJECTIVE_EXAMPLE: &str = r#"{"kind":"classify","loss":{"name":"focal","gamma":2}}"#;
#[cfg(feature = "train")]
const AUGMENT_EXAMPLE: &str = r#"[{"kind":"phase_rotation","p":1,"max_deg":180}]"#;

/// A setting given as JSON, or as the path of a file holding it; errors name the flag, the
/// field at fault and an example.
#[cfg(feature = "train")]
fn json_setting<T: serde::de::DeserializeOwned>(
    flag: &str,
    text: &str,
    example: &str,
    bare_key: Option<&str>,
) -> anyhow::Result<T> {
    let path = std::path::Path::new(text);
    let trimmed = text.trim_start();
    let is_json = trimmed.starts_with('{') || trimmed.starts_with('[');
    let (json, from) = if !is_json && path.is_file() {
        let json = std::fs::read_to_string(path)
            .with_context(|| format!("{flag}: reading {}", path.display()))?;
        (json, format!(" in {}", path.display()))
    } else if let (false, Some(key)) = (is_json, bare_key) {
        // A bare word fills `bare_key` (e.g. an objective's kind, with its defaults).
        let object = serde_json::json!({ key: text.trim() });
        (object.to_string(), String::new())
    } else {
        (text.to_string(), String::new())
    };
    let mut de = serde_json::Deserializer::from_str(&json);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        anyhow::anyhow!(
            "{flag}{from}: {} at '{}'; expected e.g. {example}",
            e.inner(),
            e.path()
        )
    })
}

#[cfg(feature = "train")]
fn export(args: ExportArgs) -> anyhow::Result<()> {
    use specwatch::train::export::{ExportOptions, export};

    let mut options = ExportOptions::new(&args.run, &args.out);
    options.name = args.name;
    options.version = args.version;
    options.data = args.data;
    options.sample_rate_hz = args.sample_rate_hz;
    options.runtime.library = args.ort_library;
    // The program by its name rather than the path it was started from.
    let command: Vec<String> = std::iter::once("specwatch-train".to_string())
        .chain(std::env::args().skip(1))
        .collect();
    options.command = Some(command.join(" "));
    let report =
        export(&options).with_context(|| format!("exporting the run in {}", args.run.display()))?;
    println!(
        "wrote {} and {}",
        report.onnx_path.display(),
        report.card_path.display()
    );
    let parity: Vec<String> = report
        .parity_max_abs
        .iter()
        .map(|(name, d)| format!("{name} {d:.2e}"))
        .collect();
    if report.test.accuracy.is_nan() {
        println!("test split: {} windows", report.test.windows);
    } else {
        println!(
            "test split: {} windows, accuracy {:.2}% (ONNX Runtime)",
            report.test.windows,
            100.0 * report.test.accuracy
        );
    }
    if let Some((az, el)) = report.test.angle_mae_deg {
        println!("  angle MAE: azimuth {az:.2}°, elevation {el:.2}°");
    }
    println!(
        "  burn vs ONNX Runtime, max |difference|: {}",
        parity.join(", ")
    );
    for (snr, n, hits) in &report.test.by_snr_db {
        println!(
            "  {snr:>6} dB: {:>6.2}% of {n}",
            100.0 * *hits as f64 / (*n).max(1) as f64
        );
    }
    Ok(())
}

#[cfg(feature = "train")]
fn probe(args: ProbeArgs) -> anyhow::Result<()> {
    use specwatch::train::probe::{ProbeHead, ProbeOptions, probe, render};

    let heads = match &args.heads {
        Some(names) => names
            .iter()
            .map(|n| ProbeHead::parse(n.trim()))
            .collect::<Result<Vec<_>, _>>()?,
        None => vec![ProbeHead::Prototype, ProbeHead::Knn, ProbeHead::Linear],
    };
    let options = ProbeOptions {
        encoder: args.encoder.clone(),
        data: args.data.clone(),
        heads,
        k: args.k,
        labelled_per_cell: args.labelled_per_cell,
        repeats: args.repeats,
        seed: args.seed,
        split: Default::default(),
    };
    let report = probe(&options).with_context(|| {
        format!(
            "probing the encoder of {} on {}",
            args.encoder.display(),
            args.data.display()
        )
    })?;
    if args.json {
        write_stdout(&(serde_json::to_string(&report)? + "\n"))
    } else {
        write_stdout(&render(&report))
    }
}

#[cfg(feature = "train")]
fn compose(args: ComposeArgs) -> anyhow::Result<()> {
    use specwatch::train::compose::{ComposeOptions, compose};

    let command: Vec<String> = std::iter::once("specwatch-train".to_string())
        .chain(std::env::args().skip(1))
        .collect();
    let options = ComposeOptions {
        base: args.base.clone(),
        specialist: args.specialist.clone(),
        out: args.out,
        name: args.name,
        version: args.version,
        data: args.data,
        runtime: specwatch::infer::RuntimeOptions {
            library: args.ort_library,
            ..Default::default()
        },
        command: Some(command.join(" ")),
    };
    let report = compose(&options).with_context(|| {
        format!(
            "composing {} with the specialist {}",
            args.base.display(),
            args.specialist.display()
        )
    })?;
    println!(
        "wrote {} and {}",
        report.onnx_path.display(),
        report.card_path.display()
    );
    let m = &report.card.metrics;
    let figure = |key: &str| m.get(key).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
    println!(
        "{}: {} windows, accuracy {:.2}%, mean over SNR {:.2}% (ONNX Runtime); composed vs \
         components max |logit diff| {:.2e}",
        options.data.display(),
        m.get("windows").and_then(|v| v.as_u64()).unwrap_or(0),
        100.0 * figure("accuracy"),
        100.0 * figure("mean_accuracy_over_snr"),
        report.parity_max_abs
    );
    if let Some(by_snr) = m.get("accuracy_by_snr_db").and_then(|v| v.as_object()) {
        // The card's keys are text; list them by rising SNR.
        let mut rows: Vec<(f64, &String, f64)> = by_snr
            .iter()
            .map(|(k, v)| {
                let snr = k.parse().unwrap_or(f64::NAN);
                (snr, k, v.as_f64().unwrap_or(f64::NAN))
            })
            .collect();
        rows.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (_, snr, acc) in rows {
            println!("  {snr:>6} dB: {:>6.2}%", 100.0 * acc);
        }
    }
    Ok(())
}

#[cfg(feature = "train")]
fn eval(args: EvalArgs) -> anyhow::Result<()> {
    use specwatch::infer::RuntimeOptions;
    use specwatch::train::eval::{EvalOptions, SnrInput, evaluate, parse_provider, write_report};

    let options = EvalOptions {
        batch: args.batch,
        max_windows: args.max_windows,
        runtime: RuntimeOptions {
            library: args.ort_library.clone(),
            execution: parse_provider(&args.provider)?,
            intra_threads: args.threads,
        },
        snr_input: if args.true_snr {
            SnrInput::Dataset
        } else {
            SnrInput::Estimated
        },
    };
    let bar = progress_bar(0, args.quiet, "evaluating");
    let evaluation = evaluate(&args.model, &args.data, &options, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })
    .with_context(|| {
        format!(
            "evaluating {} on {}",
            args.model.display(),
            args.data.display()
        )
    })?;
    bar.finish_and_clear();
    if let Some(dir) = &args.report {
        let command =
            shell_command_line(std::env::args_os().map(|a| a.to_string_lossy().into_owned()));
        let files = write_report(&evaluation, dir, &command)
            .with_context(|| format!("writing the report into {}", dir.display()))?;
        if !args.json {
            eprintln!("report: {}", files.markdown.display());
        }
    }
    let text = if args.json {
        serde_json::to_string_pretty(&evaluation.to_json())? + "\n"
    } else {
        evaluation.text_table()
    };
    write_stdout(&text)
}

/// Writes `text` to stdout; a reader that has gone away (`| head`) is not an error.
#[cfg(feature = "train")]
fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("writing to stdout"))
        }
        _ => Ok(()),
    }
}

/// The command line as a shell would take it back: arguments with characters outside a safe set
/// are single-quoted.
#[cfg(feature = "train")]
fn shell_command_line(args: impl Iterator<Item = String>) -> String {
    let quoted: Vec<String> = args
        .enumerate()
        .map(|(i, a)| {
            // The program itself by its name, not by where it was run from.
            let a = if i == 0 {
                std::path::Path::new(&a)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or(a)
            } else {
                a
            };
            let safe = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if safe {
                a
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect();
    quoted.join(" ")
}
