//! The dataset folder contract: what the writer produces, what numpy sees, and how a broken
//! folder is refused.

use specwatch::iq::C32;
use specwatch::iq::dataset::{Dataset, DatasetSource, DatasetWriter, Manifest};

use crate::common;

fn manifest(classes: &[&str]) -> Manifest {
    Manifest {
        format: String::new(),
        source: DatasetSource::Synth {
            recipe: "test".into(),
            params: serde_json::json!({}),
        },
        seed: Some(7),
        generator_version: "test".into(),
        classes: classes.iter().map(|s| s.to_string()).collect(),
        window_len: 0,
        channels: 0,
        sample_rate_hz: Some(200e3),
        snr_grid_db: vec![0.0, 10.0],
        snr_definition: "test".into(),
        count: 0,
        counts_per_class: Default::default(),
        has_angles: false,
        array: None,
        notes: vec![],
    }
}

/// Writes a 6-window, 2-channel, 8-sample dataset with recognisable samples.
fn write_small(dir: &std::path::Path, with_angles: bool) -> Manifest {
    let mut w = DatasetWriter::create(dir, 6, 2, 8, 2, with_angles).unwrap();
    for i in 0..6 {
        let iq: Vec<C32> = (0..16)
            .map(|k| C32::new(i as f32 + k as f32 / 100.0, -(k as f32)))
            .collect();
        let angles = with_angles.then_some([i as f32, -(i as f32)]);
        w.push(&iq, i % 2, i as f32 * 2.0, angles).unwrap();
    }
    let mut m = manifest(&["A", "B"]);
    m.has_angles = with_angles;
    w.finish(m).unwrap()
}

#[test]
fn written_dataset_reads_back_and_counts_are_filled_in() {
    let tmp = common::scratch();
    let m = write_small(tmp.path(), true);
    assert_eq!(m.count, 6);
    assert_eq!(m.counts_per_class["A"], 3);
    assert_eq!(m.counts_per_class["B"], 3);
    let mut d = Dataset::open(tmp.path()).unwrap();
    assert_eq!(d.len(), 6);
    assert_eq!(d.labels().unwrap(), vec![0, 1, 0, 1, 0, 1]);
    assert_eq!(d.snr_db().unwrap()[3], 6.0);
    assert_eq!(d.angles_deg().unwrap().unwrap()[2], [2.0, -2.0]);
    let w = d.read_windows(4, 1).unwrap();
    assert_eq!(w.len(), 16);
    assert_eq!(w[9], C32::new(4.09, -9.0));
}

#[test]
fn numpy_reads_dataset_files_with_the_contracted_dtypes_and_shapes() {
    let Some(py) = common::python() else { return };
    let tmp = common::scratch();
    write_small(tmp.path(), true);
    let out = common::run_python(
        &py,
        r#"
import sys, numpy as np, os
d = sys.argv[1]
x = np.load(os.path.join(d, "x.npy")); y = np.load(os.path.join(d, "y.npy"))
s = np.load(os.path.join(d, "snr.npy")); a = np.load(os.path.join(d, "angles.npy"))
print(x.dtype, x.shape, y.dtype, y.shape, s.dtype, a.dtype, a.shape)
z = x[4, 1, 1]
print(float(z.real), float(z.imag))
"#,
        &[tmp.path().to_str().unwrap()],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "complex64 (6, 2, 8) int64 (6,) float32 float32 (6, 2)"
    );
    // Window 4, channel 1, sample 1 is flat sample 9 of that window: 4.09 - 9j (f32).
    let v: Vec<f64> = lines[1]
        .split_whitespace()
        .map(|t| t.parse().unwrap())
        .collect();
    assert!(
        (v[0] - 4.09).abs() < 1e-6 && (v[1] + 9.0).abs() < 1e-9,
        "{}",
        lines[1]
    );
}

#[test]
fn folder_without_manifest_is_refused_by_name() {
    let tmp = common::scratch();
    let e = Dataset::open(tmp.path()).err().unwrap().to_string();
    assert!(e.contains("no manifest.json"), "{e}");
    assert!(e.contains(&tmp.path().display().to_string()), "{e}");
}

#[test]
fn malformed_manifest_names_the_file_and_problem() {
    let tmp = common::scratch();
    write_small(tmp.path(), false);
    let path = tmp.path().join("manifest.json");
    let good = std::fs::read_to_string(&path).unwrap();

    std::fs::write(&path, "{ not json").unwrap();
    let e = Dataset::open(tmp.path()).err().unwrap().to_string();
    assert!(
        e.contains("manifest.json") && e.contains("malformed manifest"),
        "{e}"
    );

    std::fs::write(
        &path,
        good.replacen("\"format\"", "\"colour\": 1, \"format\"", 1),
    )
    .unwrap();
    let e = Dataset::open(tmp.path()).err().unwrap().to_string();
    assert!(e.contains("unknown field `colour`"), "{e}");

    std::fs::write(
        &path,
        good.replace("\"window_len\": 8", "\"window_len\": 16"),
    )
    .unwrap();
    let e = Dataset::open(tmp.path()).err().unwrap().to_string();
    assert!(e.contains("x.npy") && e.contains("[6, 2, 16]"), "{e}");

    std::fs::write(&path, good.replace("\"count\": 6", "\"count\": 5")).unwrap();
    let e = Dataset::open(tmp.path()).err().unwrap().to_string();
    assert!(
        e.contains("'counts_per_class'") && e.contains("adds up to 6"),
        "{e}"
    );
}

#[test]
fn labels_outside_the_class_list_are_refused() {
    let tmp = common::scratch();
    write_small(tmp.path(), false);
    specwatch::iq::npy::write_array(&tmp.path().join("y.npy"), &[6], &[0i64, 1, 0, 5, 0, 1])
        .unwrap();
    let d = Dataset::open(tmp.path()).unwrap();
    let e = d.labels().unwrap_err().to_string();
    assert!(
        e.contains("y.npy") && e.contains("label 5 at index 3"),
        "{e}"
    );
}

#[test]
fn nan_samples_are_reported_with_their_window() {
    let tmp = common::scratch();
    let mut w = DatasetWriter::create(tmp.path(), 2, 1, 4, 1, false).unwrap();
    w.push(&[C32::new(1.0, 0.0); 4], 0, 0.0, None).unwrap();
    let mut bad = [C32::new(1.0, 0.0); 4];
    bad[2].im = f32::NAN;
    w.push(&bad, 0, 0.0, None).unwrap();
    w.finish(manifest(&["A"])).unwrap();
    let mut d = Dataset::open(tmp.path()).unwrap();
    let e = d.read_windows(0, 2).unwrap_err().to_string();
    assert!(
        e.contains("x.npy") && e.contains("window 1") && e.contains("offset 2"),
        "{e}"
    );
}

#[test]
fn writer_refuses_a_window_of_the_wrong_size_and_an_incomplete_dataset() {
    let tmp = common::scratch();
    let mut w = DatasetWriter::create(tmp.path(), 2, 1, 4, 1, false).unwrap();
    let e = w
        .push(&[C32::new(0.0, 0.0); 3], 0, 0.0, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("3 samples but 1 channels × 4"), "{e}");
    w.push(&[C32::new(0.0, 0.0); 4], 0, 0.0, None).unwrap();
    let e = w.finish(manifest(&["A"])).unwrap_err().to_string();
    assert!(e.contains("only 1 of the declared 2 windows"), "{e}");
    assert!(
        Dataset::open(tmp.path()).is_err(),
        "an unfinished dataset has no manifest"
    );
}

#[test]
fn truncated_data_file_is_refused_at_open() {
    let tmp = common::scratch();
    write_small(tmp.path(), false);
    let x = tmp.path().join("x.npy");
    let bytes = std::fs::read(&x).unwrap();
    std::fs::write(&x, &bytes[..bytes.len() - 10]).unwrap();
    let e = Dataset::open(tmp.path()).err().unwrap().to_string();
    assert!(e.contains("x.npy") && e.contains("truncated"), "{e}");
}
