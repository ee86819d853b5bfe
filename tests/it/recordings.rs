//! `specwatch-train import-recordings` as a user with an array's recordings runs it: labelled
//! 4-channel recordings (`.npy` + sidecar) become a dataset whose windows remember their
//! recording; a run trained on it keeps every recording's windows in one split; a bad recording
//! is refused with a message that names it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use specwatch::iq::C32;
use specwatch::iq::dataset::{Dataset, DatasetSource};
use specwatch::iq::npy::write_array;
use specwatch::iq::sidecar::{Sidecar, TruthSpan, sidecar_path};
use specwatch::train::data::Split;

use crate::common;

const CHANNELS: usize = 4;
const SAMPLES: usize = 4096;
const WINDOW: usize = 256;
/// Two classes of 3 recordings each: a tone low or high in the band.
const CLASSES: [(&str, f64); 2] = [("TONE_HI", 0.3), ("TONE_LO", 0.05)];
const PER_CLASS: usize = 3;

fn train(args: &[&str]) -> Output {
    Command::new(common::bin("specwatch-train"))
        .args(args)
        .output()
        .expect("run specwatch-train")
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Azimuth of recording `k` of class `c`, degrees.
fn azimuth(c: usize, k: usize) -> f32 {
    -60.0 + 20.0 * (c * PER_CLASS + k) as f32
}

/// Writes `DIR/NAME.npy`: a tone at `freq` cycles/sample arriving as a plane wave from
/// `azimuth_deg` on a half-wavelength 4-element line, in noise at 10 dB SNR; and its sidecar.
fn write_recording(dir: &Path, name: &str, class: &str, freq: f64, azimuth_deg: f32, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let sigma = (0.1f64 / 2.0).sqrt();
    let phase_step = std::f64::consts::PI * f64::from(azimuth_deg).to_radians().sin();
    let mut data = Vec::with_capacity(CHANNELS * SAMPLES);
    for c in 0..CHANNELS {
        for n in 0..SAMPLES {
            let phase = 2.0 * std::f64::consts::PI * freq * n as f64 + phase_step * c as f64;
            let (re, im): (f64, f64) = (
                StandardNormal.sample(&mut rng),
                StandardNormal.sample(&mut rng),
            );
            data.push(C32::new(
                (phase.cos() + sigma * re) as f32,
                (phase.sin() + sigma * im) as f32,
            ));
        }
    }
    let path = dir.join(format!("{name}.npy"));
    write_array(&path, &[CHANNELS, SAMPLES], &data).unwrap();
    Sidecar {
        sample_rate_hz: Some(1e6),
        truth: vec![TruthSpan {
            class: class.into(),
            snr_db: 10.0,
            azimuth_deg: Some(azimuth_deg),
            elevation_deg: Some(5.0),
            sample_start: 0,
            sample_count: SAMPLES as u64,
            channel: None,
        }],
        ..Sidecar::default()
    }
    .save(&sidecar_path(&path))
    .unwrap();
}

/// The six recordings in `DIR/rec`, named `CLASS-K`.
fn write_recordings(dir: &Path) -> PathBuf {
    let rec = dir.join("rec");
    std::fs::create_dir_all(&rec).unwrap();
    for (c, (class, freq)) in CLASSES.iter().enumerate() {
        for k in 0..PER_CLASS {
            let name = format!("{}-{k}", class.to_lowercase());
            write_recording(
                &rec,
                &name,
                class,
                *freq,
                azimuth(c, k),
                (c * 10 + k) as u64,
            );
        }
    }
    rec
}

#[test]
fn recordings_become_a_dataset_and_training_splits_by_recording() {
    let tmp = common::scratch();
    let rec = write_recordings(tmp.path());
    let ds = tmp.path().join("ds");
    let o = train(&[
        "import-recordings",
        rec.to_str().unwrap(),
        "--out",
        ds.to_str().unwrap(),
        "--window-len",
        &WINDOW.to_string(),
        "--max-windows-per-recording",
        "12",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("recordings: 6"), "{}", text(&o));

    // 6 recordings × 12 of their 16 windows, 4 channels × 256 samples each.
    let d = Dataset::open(&ds).unwrap();
    let m = &d.manifest;
    assert_eq!((m.count, m.channels, m.window_len), (72, CHANNELS, WINDOW));
    assert_eq!(m.classes, ["TONE_HI", "TONE_LO"]);
    assert!(m.has_angles);
    assert_eq!(m.snr_grid_db, [10.0]);
    let DatasetSource::Recordings { recordings, .. } = &m.source else {
        panic!("a recordings source, not {:?}", m.source)
    };
    let files: Vec<&str> = recordings.iter().map(|r| r.file.as_str()).collect();
    // Round-robin over class.
    assert_eq!(
        files,
        [
            "tone_hi-0.npy",
            "tone_lo-0.npy",
            "tone_hi-1.npy",
            "tone_lo-1.npy",
            "tone_hi-2.npy",
            "tone_lo-2.npy"
        ]
    );
    assert!(
        recordings
            .iter()
            .all(|r| r.windows == 12 && r.samples == SAMPLES as u64)
    );
    let ids = d.recording_ids().unwrap().unwrap();
    let labels = d.labels().unwrap();
    let angles = d.angles_deg().unwrap().unwrap();
    for (i, &r) in ids.iter().enumerate() {
        let (class, k) = (r as usize % 2, r as usize / 2);
        assert_eq!(labels[i], class as i64, "window {i}");
        assert_eq!(angles[i], [azimuth(class, k), 5.0], "window {i}");
    }
    assert!(ds.join("recording.npy").is_file());

    // One epoch of a small model; its split keeps each recording on one side.
    let run = tmp.path().join("run");
    let o = train(&[
        "train",
        "--arch",
        "resnet1d",
        "--data",
        ds.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--epochs",
        "1",
        "--width",
        "0.25",
        "--batch",
        "16",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let split = Split::load(&run.join("split.json")).unwrap();
    let mut side_of = vec![None; recordings.len()];
    for (side, windows) in [&split.train, &split.val, &split.test]
        .into_iter()
        .enumerate()
    {
        for &i in windows {
            let r = ids[i as usize] as usize;
            match side_of[r] {
                None => side_of[r] = Some(side),
                Some(s) => assert_eq!(s, side, "recording {} has windows on two sides", files[r]),
            }
        }
    }
    assert!(side_of.iter().all(Option::is_some), "{side_of:?}");
    assert_eq!(split.train.len() + split.val.len() + split.test.len(), 72);
    // 6 recordings: 1 validates, 1 tests, 4 train; split.json names them.
    let by_recording = split.recordings.expect("split.json lists the recordings");
    let counts = (
        by_recording.train.len(),
        by_recording.val.len(),
        by_recording.test.len(),
    );
    assert_eq!(counts, (4, 1, 1));
    assert_eq!((split.val.len(), split.test.len()), (12, 12));
}

#[test]
fn a_bad_recording_is_refused_naming_the_file() {
    let tmp = common::scratch();
    let rec = write_recordings(tmp.path());
    let ds = tmp.path().join("ds");
    let out = ds.to_str().unwrap();

    // A recording with 2 channels among 4-channel ones.
    let odd = rec.join("tone_lo-9.npy");
    write_array(&odd, &[2, SAMPLES], &vec![C32::new(0.0, 0.0); 2 * SAMPLES]).unwrap();
    std::fs::copy(rec.join("tone_lo-0.json"), sidecar_path(&odd)).unwrap();
    let o = train(&[
        "import-recordings",
        rec.to_str().unwrap(),
        "--out",
        out,
        "--quiet",
    ]);
    assert!(!o.status.success());
    let msg = text(&o);
    assert!(
        msg.contains("tone_lo-9.npy") && msg.contains("2 channel(s)"),
        "{msg}"
    );
    assert!(!ds.join("manifest.json").exists());
    std::fs::remove_file(&odd).unwrap();

    // A real-valued array is not a recording.
    let real = rec.join("real.npy");
    write_array(
        &real,
        &[CHANNELS, SAMPLES],
        &vec![0.0f32; CHANNELS * SAMPLES],
    )
    .unwrap();
    std::fs::copy(rec.join("tone_lo-0.json"), sidecar_path(&real)).unwrap();
    let o = train(&[
        "import-recordings",
        real.to_str().unwrap(),
        "--out",
        out,
        "--quiet",
    ]);
    assert!(!o.status.success());
    let msg = text(&o);
    assert!(
        msg.contains("real.npy") && msg.contains("'<f4'") && msg.contains("complex64"),
        "{msg}"
    );

    // A sidecar without a class, and a recording shorter than one window.
    let name = rec.join("tone_hi-0.json");
    std::fs::write(
        &name,
        r#"{"truth": [{"snr_db": 3, "sample_start": 0, "sample_count": 4096}]}"#,
    )
    .unwrap();
    let o = train(&[
        "import-recordings",
        rec.join("tone_hi-0.npy").to_str().unwrap(),
        "--out",
        out,
    ]);
    assert!(!o.status.success());
    let msg = text(&o);
    assert!(
        msg.contains("tone_hi-0.json") && msg.contains("truth[0].class"),
        "{msg}"
    );
    let o = train(&[
        "import-recordings",
        rec.join("tone_lo-1.npy").to_str().unwrap(),
        "--out",
        out,
        "--window-len",
        "8192",
    ]);
    assert!(!o.status.success());
    let msg = text(&o);
    assert!(
        msg.contains("tone_lo-1.npy") && msg.contains("fewer than one window of 8192"),
        "{msg}"
    );
    assert!(!ds.join("manifest.json").exists());
}
