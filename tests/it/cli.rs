//! `specwatch-train` as a user runs it: generation end to end, determinism across thread counts,
//! and errors for bad arguments.

use std::process::{Command, Output};

use specwatch::iq::dataset::Dataset;

use crate::common;

fn train(args: &[&str]) -> Output {
    Command::new(common::bin("specwatch-train"))
        .args(args)
        .output()
        .expect("run specwatch-train")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn gen_writes_a_complete_rml2016a_dataset() {
    let tmp = common::scratch();
    let out = tmp.path().join("ds");
    let o = train(&[
        "gen",
        "--recipe",
        "rml2016a",
        "--out",
        out.to_str().unwrap(),
        "--per-class-snr",
        "3",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let d = Dataset::open(&out).unwrap();
    assert_eq!(d.len(), 11 * 20 * 3);
    assert_eq!(d.manifest.window_len, 128);
    assert_eq!(d.manifest.channels, 1);
    assert_eq!(
        d.manifest.classes,
        [
            "8PSK", "AM-DSB", "AM-SSB", "BPSK", "CPFSK", "GFSK", "PAM4", "QAM16", "QAM64", "QPSK",
            "WBFM"
        ]
    );
    assert_eq!(d.manifest.snr_grid_db.len(), 20);
    assert!(d.manifest.counts_per_class.values().all(|n| *n == 60));
    // Every window's true SNR is within 0.1 dB of its grid point.
    let snr = d.snr_db().unwrap();
    let y = d.labels().unwrap();
    for (i, s) in snr.iter().enumerate() {
        let nominal = d.manifest.snr_grid_db[(i / 11) % 20];
        assert!(
            (s - nominal).abs() <= 0.1,
            "window {i}: snr {s} vs grid {nominal}"
        );
        assert_eq!(y[i] as usize, i % 11, "round-robin class layout");
    }
}

#[test]
fn gen_is_identical_whatever_the_thread_count() {
    let tmp = common::scratch();
    let run = |threads: &str, name: &str| {
        let out = tmp.path().join(name);
        let o = train(&[
            "gen",
            "--recipe",
            "aoa4",
            "--out",
            out.to_str().unwrap(),
            "--per-class-snr",
            "2",
            "--snr",
            "0:10:5",
            "--seed",
            "42",
            "--threads",
            threads,
            "--quiet",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        out
    };
    let (a, b) = (run("1", "a"), run("2", "b"));
    for f in ["x.npy", "y.npy", "snr.npy", "angles.npy", "manifest.json"] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f} differs between 1 and 2 threads"
        );
    }
}

#[test]
fn different_seeds_give_different_data() {
    let tmp = common::scratch();
    let run = |seed: &str| {
        let out = tmp.path().join(seed);
        let o = train(&[
            "gen",
            "--recipe",
            "zsl7",
            "--out",
            out.to_str().unwrap(),
            "--per-class-snr",
            "1",
            "--seed",
            seed,
            "--quiet",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::read(out.join("x.npy")).unwrap()
    };
    assert_ne!(run("1"), run("2"));
}

#[test]
fn bad_arguments_fail_with_a_message_naming_them() {
    let tmp = common::scratch();
    let out = tmp.path().join("ds");
    let out = out.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["gen", "--recipe", "rml2099", "--out", out], "rml2099"),
        (
            &["gen", "--recipe", "rml2016a", "--out", out, "--snr", "0:10"],
            "'snr'",
        ),
        (
            &[
                "gen",
                "--recipe",
                "rml2016a",
                "--out",
                out,
                "--per-class-snr",
                "0",
            ],
            "per-class-snr",
        ),
        (
            &["gen", "--recipe", "aoa4", "--out", out, "--array", "spiral"],
            "spiral",
        ),
        (
            &[
                "gen",
                "--recipe",
                "aoa4",
                "--out",
                out,
                "--array",
                "ula",
                "--elements",
                "1",
            ],
            "'elements'",
        ),
        (
            &[
                "gen",
                "--recipe",
                "rml2016a",
                "--out",
                out,
                "--wav",
                "/nonexistent.wav",
            ],
            "/nonexistent.wav",
        ),
        (&["inspect", out], "no manifest.json"),
    ];
    for (args, needle) in cases {
        let o = train(args);
        assert!(!o.status.success(), "{args:?} should fail");
        let e = stderr(&o);
        assert!(e.contains(needle), "{args:?}: stderr lacks {needle:?}: {e}");
        assert!(!e.contains("panicked"), "{args:?} panicked: {e}");
    }
}

#[test]
fn inspect_summarises_a_dataset() {
    let tmp = common::scratch();
    let out = tmp.path().join("ds");
    let o = train(&[
        "gen",
        "--recipe",
        "zsl7",
        "--out",
        out.to_str().unwrap(),
        "--per-class-snr",
        "1",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = train(&["inspect", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("77 windows × 1 channel(s) × 1024 samples, 7 classes, 11 SNR points"),
        "{text}"
    );
    assert!(text.contains("manifest sha256: "), "{text}");
}

#[test]
fn import_radioml_converts_a_2016_pickle_into_a_dataset() {
    let Some(py) = common::python() else { return };
    let tmp = common::scratch();
    let file = tmp.path().join("RML2016.10a_dict.pkl");
    common::run_python(
        &py,
        r#"
import sys, pickle, numpy as np
rng = np.random.default_rng(0)
d = {(m, s): rng.standard_normal((4, 2, 128)).astype(np.float32)
     for m in ["QPSK", "BPSK", "WBFM"] for s in [-10, 0, 10]}
with open(sys.argv[1], "wb") as f:
    pickle.dump(d, f, protocol=2)
"#,
        &[file.to_str().unwrap()],
    );
    let out = tmp.path().join("ds");
    let o = train(&[
        "import-radioml",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let d = Dataset::open(&out).unwrap();
    assert_eq!(d.len(), 3 * 3 * 4);
    assert_eq!(d.manifest.classes, ["BPSK", "QPSK", "WBFM"]);
    assert_eq!(d.manifest.snr_grid_db, [-10.0, 0.0, 10.0]);

    let o = train(&[
        "import-radioml",
        "/nonexistent/RML2016.10a_dict.pkl",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("/nonexistent/RML2016.10a_dict.pkl"),
        "{}",
        stderr(&o)
    );
}
