//! Capture files, sidecars and SigMF recordings, checked against numpy and the `sigmf` package.

use std::path::{Path, PathBuf};

use specwatch::iq::C32;
use specwatch::iq::capture::{Capture, CaptureFormat};
use specwatch::iq::npy;
use specwatch::iq::sidecar::{Sidecar, TruthSpan};
use specwatch::iq::sigmf::{
    Annotation, RecordingInfo, SigmfDatatype, SigmfReader, write_annotations, write_recording,
};

use crate::common::{python, run_python, scratch};

/// Raw little-endian complex64 samples, as numpy's `tofile` writes them.
fn read_raw_c8(path: &Path) -> Vec<C32> {
    let bytes = std::fs::read(path).expect("read raw reference");
    bytes
        .chunks_exact(8)
        .map(|b| {
            C32::new(
                f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                f32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            )
        })
        .collect()
}

fn write_raw_c8(path: &Path, samples: &[C32]) {
    let mut out = Vec::with_capacity(samples.len() * 8);
    for s in samples {
        out.extend_from_slice(&s.re.to_le_bytes());
        out.extend_from_slice(&s.im.to_le_bytes());
    }
    std::fs::write(path, out).expect("write raw reference");
}

/// A deterministic test signal: `channels` rows of `n` samples, distinct everywhere.
fn test_signal(channels: usize, n: usize) -> Vec<Vec<C32>> {
    (0..channels)
        .map(|c| {
            (0..n)
                .map(|i| {
                    let t = i as f32 * 0.1 + c as f32;
                    C32::new(t.sin() * 0.7, (1.3 * t).cos() * 0.5 + c as f32 * 1e-3)
                })
                .collect()
        })
        .collect()
}

fn bits(v: &[C32]) -> Vec<(u32, u32)> {
    v.iter().map(|s| (s.re.to_bits(), s.im.to_bits())).collect()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[test]
fn npy_written_by_numpy_reads_bit_exact() {
    let Some(py) = python() else { return };
    let dir = scratch();
    run_python(
        &py,
        r#"
import sys, numpy as np
d = sys.argv[1]
rng = np.random.default_rng(7)
def c(shape, dt):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dt)
a = c((3, 1000), np.complex64); np.save(f"{d}/c8_2d.npy", a); a.tofile(f"{d}/c8_2d.bin")
b = c((1000,), np.complex64); np.save(f"{d}/c8_1d.npy", b); b.tofile(f"{d}/c8_1d.bin")
f = np.asfortranarray(c((4, 777), np.complex64)); assert f.flags.f_contiguous
np.save(f"{d}/c8_fortran.npy", f); np.ascontiguousarray(f).tofile(f"{d}/c8_fortran.bin")
w = c((2, 500), np.complex128); np.save(f"{d}/c16_2d.npy", w); w.astype(np.complex64).tofile(f"{d}/c16_2d.bin")
"#,
        &[s(dir.path())],
    );
    for (name, channels) in [("c8_2d", 3), ("c8_1d", 1), ("c8_fortran", 4), ("c16_2d", 2)] {
        let mut cap = Capture::open(&dir.path().join(format!("{name}.npy"))).unwrap();
        assert_eq!(cap.format(), CaptureFormat::Npy);
        assert_eq!(cap.channels(), channels, "{name}");
        let whole = cap.read_all().unwrap();
        let reference = read_raw_c8(&dir.path().join(format!("{name}.bin")));
        let n = reference.len() / channels;
        assert_eq!(cap.len() as usize, n, "{name}");
        for (c, got) in whole.iter().enumerate() {
            // Bit-exact for complex64; complex128 is narrowed exactly as numpy's astype does.
            assert_eq!(
                bits(got),
                bits(&reference[c * n..(c + 1) * n]),
                "{name} channel {c}"
            );
        }
    }
}

#[test]
fn npy_written_by_rust_reads_bit_exact_in_numpy() {
    let Some(py) = python() else { return };
    let dir = scratch();
    let sig = test_signal(2, 1234);
    let flat: Vec<C32> = sig.concat();
    npy::write_array(&dir.path().join("two.npy"), &[2, 1234], &flat).unwrap();
    write_raw_c8(&dir.path().join("two.bin"), &flat);
    npy::write_array(&dir.path().join("one.npy"), &[1234], &sig[0]).unwrap();
    write_raw_c8(&dir.path().join("one.bin"), &sig[0]);
    run_python(
        &py,
        r#"
import sys, numpy as np
d = sys.argv[1]
for name, shape in [("two", (2, 1234)), ("one", (1234,))]:
    a = np.load(f"{d}/{name}.npy")
    assert a.dtype == np.complex64 and a.shape == shape, (a.dtype, a.shape)
    ref = np.fromfile(f"{d}/{name}.bin", dtype=np.complex64).reshape(shape)
    assert a.tobytes() == ref.tobytes(), name
"#,
        &[s(dir.path())],
    );
}

#[test]
fn chunked_reads_equal_the_whole_capture() {
    let dir = scratch();
    let sig = test_signal(3, 1000);
    let c_order = dir.path().join("c.npy");
    npy::write_array(&c_order, &[3, 1000], &sig.concat()).unwrap();
    // A Fortran-ordered (3, 1000) array is stored sample-interleaved: build one by hand.
    let interleaved: Vec<C32> = (0..1000)
        .flat_map(|i| sig.iter().map(move |ch| ch[i]))
        .collect();
    let f_order = dir.path().join("f.npy");
    write_fortran_npy(&f_order, &[3, 1000], &interleaved);
    for path in [&c_order, &f_order] {
        let mut cap = Capture::open(path).unwrap();
        assert_eq!(cap.read_all().unwrap(), sig, "{}", path.display());
        let mut chunks = vec![Vec::new(); 3];
        let mut buf = vec![Vec::new(); 3];
        let mut start = 0u64;
        while start < cap.len() {
            let n = 37.min((cap.len() - start) as usize);
            cap.read_into(start, n, &mut buf).unwrap();
            for (all, part) in chunks.iter_mut().zip(&buf) {
                all.extend_from_slice(part);
            }
            start += n as u64;
        }
        assert_eq!(chunks, sig, "{}", path.display());
        assert_eq!(cap.read(990, 10).unwrap()[2], sig[2][990..]);
    }
}

/// Writes a `.npy` whose header says Fortran order, with `data` in Fortran storage order.
fn write_fortran_npy(path: &Path, shape: &[usize], data: &[C32]) {
    let header = npy::encode_header(npy::Dtype::Complex64, shape);
    let text = String::from_utf8(header[10..].to_vec()).unwrap();
    let text = text.replace("'fortran_order': False", "'fortran_order': True ");
    let mut bytes = header[..10].to_vec();
    bytes.extend_from_slice(text.as_bytes());
    for s in data {
        bytes.extend_from_slice(&s.re.to_le_bytes());
        bytes.extend_from_slice(&s.im.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

fn open_err(path: &Path) -> String {
    match Capture::open(path) {
        Ok(c) => panic!("{} opened but should not have: {c:?}", path.display()),
        Err(e) => e.to_string(),
    }
}

fn assert_names(msg: &str, path: &Path, expected: &[&str]) {
    assert!(
        msg.contains(&path.display().to_string()),
        "error does not name the file {}: {msg}",
        path.display()
    );
    for e in expected {
        assert!(msg.contains(e), "error lacks '{e}': {msg}");
    }
}

#[test]
fn truncated_npy_is_refused_naming_file_and_sizes() {
    let dir = scratch();
    let path = dir.path().join("cut.npy");
    npy::write_array(&path, &[2, 100], &test_signal(2, 100).concat()).unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 12)
        .unwrap();
    let msg = open_err(&path);
    assert_names(&msg, &path, &["truncated", "[2, 100]", "1600 data bytes"]);
}

#[test]
fn capture_of_wrong_dtype_is_refused() {
    let dir = scratch();
    let path = dir.path().join("real.npy");
    npy::write_array(&path, &[2, 10], &[0.5f32; 20]).unwrap();
    let msg = open_err(&path);
    assert_names(
        &msg,
        &path,
        &["'<f4'", "complex64 ('<c8') or complex128 ('<c16')"],
    );
}

#[test]
fn capture_of_three_dimensions_is_refused() {
    let dir = scratch();
    let path = dir.path().join("cube.npy");
    npy::write_array(&path, &[2, 3, 4], &[C32::new(0.0, 0.0); 24]).unwrap();
    let msg = open_err(&path);
    assert_names(
        &msg,
        &path,
        &["[2, 3, 4]", "(channels, samples) or (samples,)"],
    );
}

#[test]
fn empty_capture_is_refused() {
    let dir = scratch();
    let path = dir.path().join("empty.npy");
    npy::write_array::<C32>(&path, &[2, 0], &[]).unwrap();
    let msg = open_err(&path);
    assert_names(&msg, &path, &["no samples", "at least one sample"]);
}

#[test]
fn nan_sample_is_an_error_naming_channel_and_index() {
    let dir = scratch();
    let path = dir.path().join("nan.npy");
    let mut sig = test_signal(2, 100);
    sig[1][57] = C32::new(0.1, f32::NAN);
    npy::write_array(&path, &[2, 100], &sig.concat()).unwrap();
    let mut cap = Capture::open(&path).unwrap();
    assert!(
        cap.read(0, 50).is_ok(),
        "the samples before the NaN are fine"
    );
    let msg = cap.read(40, 30).unwrap_err().to_string();
    assert_names(&msg, &path, &["channel 1, sample 57", "finite"]);
}

fn sidecar_err(text: &str) -> (PathBuf, String, tempfile::TempDir) {
    let dir = scratch();
    let path = dir.path().join("cap.npy");
    npy::write_array(&path, &[2, 100], &test_signal(2, 100).concat()).unwrap();
    let side = dir.path().join("cap.json");
    std::fs::write(&side, text).unwrap();
    let msg = open_err(&path);
    (side, msg, dir)
}

#[test]
fn sidecar_with_unknown_field_is_refused() {
    let (side, msg, _dir) = sidecar_err(r#"{"sample_rate": 1e6}"#);
    assert_names(
        &msg,
        &side,
        &["'sample_rate'", "not a known field", "sample_rate_hz"],
    );
}

#[test]
fn sidecar_with_wrong_type_is_refused() {
    let (side, msg, _dir) = sidecar_err(r#"{"sample_rate_hz": "1 MHz"}"#);
    assert_names(
        &msg,
        &side,
        &["'sample_rate_hz'", "is a string", "expected a number"],
    );
    let (side, msg, _dir) = sidecar_err(
        r#"{"truth": [{"class": "QPSK", "snr_db": 3, "sample_start": -5, "sample_count": 10}]}"#,
    );
    assert_names(
        &msg,
        &side,
        &["'truth[0].sample_start'", "non-negative integer"],
    );
}

#[test]
fn sidecar_with_bad_start_time_is_refused() {
    let (side, msg, _dir) = sidecar_err(r#"{"start_time": "2024-02-30 12:00"}"#);
    assert_names(
        &msg,
        &side,
        &["'start_time'", "RFC 3339", "2024-05-01T12:00:00.250Z"],
    );
}

#[test]
fn sidecar_that_is_not_json_is_refused_with_its_line() {
    let (side, msg, _dir) = sidecar_err("{\n  \"sample_rate_hz\": 1e6,\n}");
    assert_names(&msg, &side, &["malformed JSON", "line 3"]);
}

#[test]
fn sidecar_span_outside_the_capture_is_refused() {
    let (side, msg, _dir) = sidecar_err(
        r#"{"truth": [{"class": "QPSK", "snr_db": 3, "sample_start": 95, "sample_count": 10}]}"#,
    );
    assert_names(&msg, &side, &["'truth[0]'", "95..105", "100 samples"]);
}

#[test]
fn sidecar_values_are_reported_by_the_capture() {
    let dir = scratch();
    let path = dir.path().join("cap.npy");
    npy::write_array(&path, &[2, 100], &test_signal(2, 100).concat()).unwrap();
    let sidecar = Sidecar {
        sample_rate_hz: Some(2.4e6),
        center_freq_hz: Some(915e6),
        start_time: Some("2024-05-01T12:00:00.250Z".into()),
        channel_notes: vec!["north".into(), "south".into()],
        array: Some(specwatch::dsp::array::ArrayGeometry::from_kind("ula", 2, 0.5).unwrap()),
        truth: vec![TruthSpan {
            class: "QPSK".into(),
            snr_db: 10.0,
            azimuth_deg: Some(20.0),
            elevation_deg: None,
            sample_start: 0,
            sample_count: 100,
            channel: None,
        }],
    };
    sidecar.save(&dir.path().join("cap.json")).unwrap();
    let cap = Capture::open(&path).unwrap();
    assert_eq!(cap.sample_rate_hz(), Some(2.4e6));
    assert_eq!(cap.center_freq_hz(), Some(915e6));
    assert_eq!(cap.start_time(), Some("2024-05-01T12:00:00.250Z"));
    assert_eq!(cap.sidecar(), Some(&sidecar));
}

fn detections() -> Vec<Annotation> {
    vec![
        Annotation {
            sample_start: 512,
            sample_count: Some(256),
            label: Some("QAM16".into()),
            comment: Some("specwatch detection".into()),
            generator: Some("amc-resnet 0.3".into()),
            freq_edges_hz: Some((914.9e6, 915.1e6)),
            confidence: Some(0.91),
            snr_db: Some(7.5),
            azimuth_deg: Some(-12.5),
            elevation_deg: None,
            detail: None,
            ..Default::default()
        },
        Annotation {
            sample_start: 0,
            sample_count: Some(128),
            label: Some("AM-SSB-SC".into()),
            confidence: Some(0.6),
            azimuth_deg: Some(30.0),
            elevation_deg: Some(5.0),
            model_azimuth_deg: Some(30.0),
            model_elevation_deg: Some(5.0),
            doa_azimuth_deg: Some(41.5),
            doa_elevation_deg: Some(-2.0),
            doa_method: Some("music".into()),
            ..Default::default()
        },
    ]
}

/// Validates a recording with the `sigmf` package, with undeclared extensions an error, and
/// compares its samples with `ref.bin` (channel-major complex64) within `tol`.
const VALIDATE: &str = r#"
import sys, warnings, json, numpy as np
import sigmf
meta, ref, channels, tol = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
warnings.simplefilter("error", DeprecationWarning)
f = sigmf.sigmffile.fromfile(meta)
f.validate()
x = f.read_samples()
expect = np.fromfile(ref, dtype=np.complex64).reshape(channels, -1)
got = x.reshape(-1, channels).T if channels > 1 else x.reshape(1, -1)
assert got.shape == expect.shape, (got.shape, expect.shape)
err = np.max(np.abs(got - expect))
assert err <= tol, err
print(json.dumps({"global": f.get_global_info(), "annotations": f.get_annotations()}))
"#;

#[test]
fn sigmf_written_by_rust_passes_the_sigmf_validator() {
    let Some(py) = python() else { return };
    let dir = scratch();
    let sig = test_signal(2, 1024);
    let base = dir.path().join("rec");
    let info = RecordingInfo {
        center_freq_hz: Some(915e6),
        datetime: Some("2024-05-01T12:00:00.250Z".into()),
        description: Some("two-channel test".into()),
        ..RecordingInfo::cf32(1e6)
    };
    let (meta, data) = write_recording(&base, &sig, info, &detections()).unwrap();
    assert!(data.is_file());
    write_raw_c8(&dir.path().join("ref.bin"), &sig.concat());
    let out = run_python(
        &py,
        VALIDATE,
        &[s(&meta), s(&dir.path().join("ref.bin")), "2", "1e-6"],
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let names: Vec<&str> = v["global"]["core:extensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["signal", "spatial", "specwatch"]);
    assert_eq!(v["global"]["spatial:num_elements"], 2);
    let anns = v["annotations"].as_array().unwrap();
    assert_eq!(anns[0]["core:label"], "AM-SSB-SC", "sorted by sample_start");
    assert_eq!(anns[0]["spatial:signal_bearing"]["elevation"], 5.0);
    assert_eq!(
        anns[0]["specwatch:model_bearing"],
        serde_json::json!({"azimuth": 30.0, "elevation": 5.0})
    );
    assert_eq!(
        anns[0]["specwatch:doa_bearing"],
        serde_json::json!({"azimuth": 41.5, "elevation": -2.0, "method": "music"})
    );
    assert_eq!(anns[1]["core:label"], "QAM16");
    assert_eq!(anns[1]["spatial:signal_azimuth"], -12.5);
    assert_eq!(anns[1]["signal:detail"]["mod_class"], "qam");
    assert_eq!(anns[1]["signal:detail"]["order"], 16);
    assert_eq!(anns[1]["core:freq_lower_edge"], 914.9e6);
    // And it reads back in Rust, annotations included.
    let mut cap = Capture::open(&meta).unwrap();
    assert_eq!(cap.format(), CaptureFormat::Sigmf);
    assert_eq!(cap.read_all().unwrap(), sig);
    assert_eq!(cap.center_freq_hz(), Some(915e6));
    let read_back = &cap.sigmf().unwrap().annotations;
    assert_eq!(read_back[1].azimuth_deg, Some(-12.5));
    assert_eq!(read_back[1].confidence, Some(0.91));
    assert_eq!(
        Annotation {
            detail: None,
            ..read_back[0].clone()
        },
        detections()[1],
        "both bearings read back (signal:detail is derived from the label when written)"
    );
}

/// Detections of an array station written back as annotations of its recording: each carries
/// the station's bearing (`spatial:signal_bearing`) and both estimators' bearings
/// (`specwatch:model_bearing`, `specwatch:doa_bearing`), validated by the `sigmf` package.
#[test]
fn detections_written_back_as_annotations_carry_both_bearings() {
    use specwatch::store::Detection;
    let both = Detection {
        id: 7,
        time_ns: 1_714_564_800_000_000_000,
        stream: "x300".into(),
        sample_start: 256,
        sample_count: 128,
        channel: 0,
        channels: vec![0, 1, 2, 3],
        center_freq_hz: Some(2.45e9),
        model: "amc-aoa".into(),
        model_version: "1.2.0".into(),
        class: "QPSK".into(),
        confidence: 0.875,
        top_k: vec![("QPSK".into(), 0.875)],
        snr_db: Some(f32::NAN),
        azimuth_deg: Some(35.0),
        elevation_deg: Some(10.0),
        model_azimuth_deg: Some(35.0),
        model_elevation_deg: Some(10.0),
        doa_azimuth_deg: Some(20.25),
        doa_elevation_deg: Some(9.5),
        doa_method: Some("music".into()),
        windows: 1,
        observed_ns: 0,
    };
    // A model without angle outputs: MUSIC's bearing is the station's and the only one.
    let array_only = Detection {
        sample_start: 512,
        snr_db: Some(14.0),
        azimuth_deg: Some(20.5),
        elevation_deg: Some(9.75),
        model_azimuth_deg: None,
        model_elevation_deg: None,
        doa_azimuth_deg: Some(20.5),
        doa_elevation_deg: Some(9.75),
        ..both.clone()
    };
    let anns: Vec<Annotation> = [&both, &array_only].map(Annotation::from).to_vec();
    assert_eq!(
        anns[0],
        Annotation {
            sample_start: 256,
            sample_count: Some(128),
            label: Some("QPSK".into()),
            generator: Some("amc-aoa 1.2.0".into()),
            confidence: Some(0.875),
            snr_db: None,
            azimuth_deg: Some(35.0),
            elevation_deg: Some(10.0),
            model_azimuth_deg: Some(35.0),
            model_elevation_deg: Some(10.0),
            doa_azimuth_deg: Some(20.25),
            doa_elevation_deg: Some(9.5),
            doa_method: Some("music".into()),
            ..Default::default()
        },
        "a non-finite SNR is left out"
    );
    let json = anns[1].to_json();
    assert!(json.get("specwatch:model_bearing").is_none());
    assert_eq!(
        json["specwatch:doa_bearing"],
        serde_json::json!({"azimuth": 20.5, "elevation": 9.75, "method": "music"})
    );

    let dir = scratch();
    let sig = test_signal(4, 1024);
    let (meta, _) = write_recording(
        &dir.path().join("array"),
        &sig,
        RecordingInfo::cf32(1e6),
        &[],
    )
    .unwrap();
    write_annotations(&meta, &anns).unwrap();
    let r = SigmfReader::open(&meta).unwrap();
    let read_back: Vec<Annotation> = r
        .meta()
        .annotations
        .iter()
        .map(|a| Annotation {
            detail: None,
            ..a.clone()
        })
        .collect();
    assert_eq!(
        read_back, anns,
        "read back as written (signal:detail is derived from the label)"
    );
    let text = std::fs::read_to_string(&meta).unwrap();
    let root: serde_json::Value = serde_json::from_str(&text).unwrap();
    let specwatch_ext = root["global"]["core:extensions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "specwatch")
        .expect("the specwatch extension is declared");
    assert_eq!(
        specwatch_ext["version"],
        specwatch::iq::sigmf::SPECWATCH_EXTENSION_VERSION
    );

    let Some(py) = python() else { return };
    write_raw_c8(&dir.path().join("ref.bin"), &sig.concat());
    let out = run_python(
        &py,
        VALIDATE,
        &[s(&meta), s(&dir.path().join("ref.bin")), "4", "1e-6"],
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let got = v["annotations"].as_array().unwrap();
    assert_eq!(got[0]["spatial:signal_bearing"]["azimuth"], 35.0);
    assert_eq!(got[0]["specwatch:model_bearing"]["azimuth"], 35.0);
    assert_eq!(got[0]["specwatch:doa_bearing"]["azimuth"], 20.25);
    assert_eq!(got[0]["specwatch:doa_bearing"]["method"], "music");
    assert_eq!(got[1]["spatial:signal_bearing"]["azimuth"], 20.5);
    assert!(got[1].get("specwatch:model_bearing").is_none());
}

#[test]
fn sigmf_ci16_written_by_rust_reads_in_python_within_one_step() {
    let Some(py) = python() else { return };
    let dir = scratch();
    let sig = test_signal(1, 999);
    let info = RecordingInfo {
        datatype: SigmfDatatype::Ci16Le,
        ..RecordingInfo::cf32(48e3)
    };
    let (meta, _) = write_recording(&dir.path().join("q.sigmf-meta"), &sig, info, &[]).unwrap();
    write_raw_c8(&dir.path().join("ref.bin"), &sig[0]);
    let tol = format!("{}", 1.0 / 32768.0);
    run_python(
        &py,
        VALIDATE,
        &[s(&meta), s(&dir.path().join("ref.bin")), "1", &tol],
    );
}

#[test]
fn sigmf_written_by_python_reads_equal() {
    let Some(py) = python() else { return };
    let dir = scratch();
    run_python(
        &py,
        r#"
import sys, numpy as np, sigmf
from sigmf import SigMFFile
d = sys.argv[1]
rng = np.random.default_rng(3)
def record(name, datatype, data, channels):
    data.tofile(f"{d}/{name}.sigmf-data")
    m = SigMFFile(data_file=f"{d}/{name}.sigmf-data", global_info={
        "core:datatype": datatype, "core:sample_rate": 250000.0,
        "core:num_channels": channels, "core:version": sigmf.__specification__})
    m.add_capture(0, metadata={"core:frequency": 433.92e6, "core:datetime": "2024-05-01T12:00:00Z"})
    m.add_annotation(10, 20, metadata={"core:label": "burst"})
    m.tofile(f"{d}/{name}.sigmf-meta")
# cf32_le, 2 channels interleaved; reference channel-major.
x = (rng.standard_normal((1000, 2)) + 1j * rng.standard_normal((1000, 2))).astype(np.complex64)
record("f", "cf32_le", x, 2)
np.ascontiguousarray(x.T).tofile(f"{d}/f.bin")
# ci16_le, 1 channel; reference is what the sigmf package's autoscaling gives.
q = rng.integers(-32768, 32767, size=(700, 2), dtype=np.int16)
record("i", "ci16_le", q, 1)
ref = sigmf.sigmffile.fromfile(f"{d}/i.sigmf-meta").read_samples().astype(np.complex64)
ref.tofile(f"{d}/i.bin")
"#,
        &[s(dir.path())],
    );
    for (name, channels) in [("f", 2usize), ("i", 1)] {
        let mut cap = Capture::open(&dir.path().join(format!("{name}.sigmf-data"))).unwrap();
        assert_eq!(cap.channels(), channels);
        assert_eq!(cap.sample_rate_hz(), Some(250e3));
        assert_eq!(cap.center_freq_hz(), Some(433.92e6));
        assert_eq!(cap.start_time(), Some("2024-05-01T12:00:00Z"));
        let reference = read_raw_c8(&dir.path().join(format!("{name}.bin")));
        let n = reference.len() / channels;
        assert_eq!(cap.len() as usize, n);
        let whole = cap.read_all().unwrap();
        for (c, got) in whole.iter().enumerate() {
            assert_eq!(
                bits(got),
                bits(&reference[c * n..(c + 1) * n]),
                "{name} channel {c}"
            );
        }
        let meta = cap.sigmf().unwrap();
        assert_eq!(meta.annotations[0].label.as_deref(), Some("burst"));
        assert_eq!(meta.annotations[0].sample_count, Some(20));
    }
    // Detections written back into the Python-made recording still validate.
    let meta = dir.path().join("f.sigmf-meta");
    write_annotations(&meta, &detections()).unwrap();
    let r = SigmfReader::open(&meta).unwrap();
    assert_eq!(r.meta().annotations.len(), 3);
    let reference = read_raw_c8(&dir.path().join("f.bin"));
    write_raw_c8(&dir.path().join("f2.bin"), &reference);
    run_python(
        &py,
        VALIDATE,
        &[s(&meta), s(&dir.path().join("f2.bin")), "2", "0"],
    );
}

#[test]
fn sigmf_with_unsupported_datatype_or_short_data_is_refused() {
    let dir = scratch();
    let base = dir.path().join("r");
    let (meta, data) =
        write_recording(&base, &test_signal(1, 10), RecordingInfo::cf32(1e3), &[]).unwrap();
    let text = std::fs::read_to_string(&meta).unwrap();
    std::fs::write(&meta, text.replace("cf32_le", "cu8")).unwrap();
    let msg = open_err(&meta);
    assert_names(
        &msg,
        &meta,
        &["global.core:datatype", "'cu8'", "'cf32_le' or 'ci16_le'"],
    );
    std::fs::write(&meta, &text).unwrap();
    let bytes = std::fs::read(&data).unwrap();
    std::fs::write(&data, &bytes[..bytes.len() - 3]).unwrap();
    let msg = open_err(&meta);
    assert_names(&msg, &data, &["not a whole number", "truncated"]);
}

#[test]
fn sigmf_writer_refuses_non_finite_samples() {
    let dir = scratch();
    let mut sig = test_signal(2, 10);
    sig[1][3] = C32::new(f32::INFINITY, 0.0);
    let err = write_recording(&dir.path().join("r"), &sig, RecordingInfo::cf32(1e3), &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("r.sigmf-data") && err.contains("channel 1, sample 3"),
        "{err}"
    );
}
