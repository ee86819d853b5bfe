//! The daemon's Prometheus metrics: names, labels and buckets, in one registry.
//!
//! Every metric has the `specwatch_` prefix, is in base units (seconds, degrees, dB) and takes
//! labels only from bounded sets: source and model names from the config, class names from the
//! model cards, and the fixed drop reasons. No label ever carries a frequency, a time or an id.

use std::sync::Arc;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Reasons a window is dropped before classification (`specwatch_windows_dropped_total`).
pub const WINDOW_DROP_REASONS: [&str; 3] = ["queue_full", "nonfinite", "shutdown"];

/// Reasons a detection is dropped before it is stored (`specwatch_detections_dropped_total`).
pub const DETECTION_DROP_REASONS: [&str; 2] = ["store_backlog", "store_error"];

/// Values of the `estimator` label of `specwatch_detection_azimuth_degrees`: the model's own
/// angle outputs, and the array estimator's methods ([`crate::dsp::doa::DoaMethod`]).
pub const BEARING_ESTIMATORS: [&str; 3] = ["model", "music", "bartlett"];

/// Bucket bounds of `specwatch_bearing_disagreement_degrees`, degrees (the wrapped difference
/// is 0 to 180).
pub const DISAGREEMENT_BUCKETS_DEG: [f64; 10] =
    [0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 45.0, 90.0, 135.0, 180.0];

/// All of the daemon's metrics. Made once by [`Metrics::new`] and shared as `Arc<Metrics>`; each
/// field is a `prometheus` handle, updated directly by the part that owns the event.
pub struct Metrics {
    registry: Registry,
    /// `specwatch_build_info{version}`: always 1; the label carries the package version.
    pub build_info: IntGaugeVec,
    /// `specwatch_samples_in_total{source}`: IQ samples read from each source (per channel set).
    pub samples_in_total: IntCounterVec,
    /// `specwatch_windows_framed_total{source}`: windows cut from each source.
    pub windows_framed_total: IntCounterVec,
    /// `specwatch_windows_gate_rejected_total{source}`: windows the energy/SNR gate let go.
    pub windows_gate_rejected_total: IntCounterVec,
    /// `specwatch_windows_classified_total{model}`: windows a model classified.
    pub windows_classified_total: IntCounterVec,
    /// `specwatch_windows_dropped_total{model,reason}`: windows dropped before inference;
    /// `reason` is one of [`WINDOW_DROP_REASONS`].
    pub windows_dropped_total: IntCounterVec,
    /// `specwatch_detections_total{model,class}`: detections made (counted at the sink, before
    /// any merging in the store).
    pub detections_total: IntCounterVec,
    /// `specwatch_detections_dropped_total{reason}`: detections lost on the way into the store;
    /// `reason` is one of [`DETECTION_DROP_REASONS`].
    pub detections_dropped_total: IntCounterVec,
    /// `specwatch_detection_snr_db{model}`: SNR estimates of detections, dB.
    pub detection_snr_db: HistogramVec,
    /// `specwatch_detection_azimuth_degrees{model,estimator}`: azimuths of detections, degrees,
    /// one observation per bearing a detection carries; `estimator` is one of
    /// [`BEARING_ESTIMATORS`].
    pub detection_azimuth_degrees: HistogramVec,
    /// `specwatch_bearing_disagreement_degrees{model}`: per classified window that has both
    /// the model's azimuth and the array estimator's, the absolute difference wrapped to
    /// 0..=180, degrees.
    pub bearing_disagreement_degrees: HistogramVec,
    /// `specwatch_inference_latency_seconds{model}`: time of one batched model run.
    pub inference_latency_seconds: HistogramVec,
    /// `specwatch_inference_batch_size{model}`: windows per model run.
    pub inference_batch_size: HistogramVec,
    /// `specwatch_detection_latency_seconds`: from a window reaching the sink to its detection
    /// being committed to the store.
    pub detection_latency_seconds: Histogram,
    /// `specwatch_device_overflows_total{source}`: overflows reported by the radio.
    pub device_overflows_total: IntCounterVec,
    /// `specwatch_stream_errors_total{source}`: stream errors (timeouts, late commands, …).
    pub stream_errors_total: IntCounterVec,
    /// `specwatch_store_write_errors_total`: failed store transactions.
    pub store_write_errors_total: IntCounter,
    /// `specwatch_store_batch_size`: detections per committed store transaction (at most the
    /// store's `batch_max`).
    pub store_batch_size: Histogram,
    /// `specwatch_store_commit_seconds`: time of one committed store transaction, from its
    /// `BEGIN` to the end of its `COMMIT`.
    pub store_commit_seconds: Histogram,
    /// `specwatch_store_rows`: detections held in the store.
    pub store_rows: IntGauge,
    /// `specwatch_source_up{source}`: 1 while a source streams, 0 otherwise.
    pub source_up: IntGaugeVec,
    /// `specwatch_models_loaded`: models loaded.
    pub models_loaded: IntGauge,
    /// `specwatch_flowgraph_running`: 1 while the flowgraph runs.
    pub flowgraph_running: IntGauge,
}

/// `start`, `start*f`, … as a 1-2-5 series: 1, 2, 5, 10, 20, 50, … times `start`, up to `end`.
fn one_two_five(start: f64, end: f64) -> Vec<f64> {
    let mut buckets = Vec::new();
    let mut decade = start;
    'outer: loop {
        for step in [1.0, 2.0, 5.0] {
            let b = decade * step;
            if b > end * (1.0 + 1e-9) {
                break 'outer;
            }
            buckets.push(b);
        }
        decade *= 10.0;
    }
    buckets
}

/// `start`, `start+width`, … up to and including `end`.
fn linear(start: f64, width: f64, end: f64) -> Vec<f64> {
    let count = ((end - start) / width).round() as usize + 1;
    (0..count).map(|i| start + width * i as f64).collect()
}

impl Metrics {
    /// Makes every metric in a fresh registry and sets `specwatch_build_info` to 1. The drop
    /// reasons of `specwatch_detections_dropped_total` start at 0 so alerts can see them before
    /// the first drop.
    pub fn new() -> Arc<Metrics> {
        // Building metrics only fails on a malformed name or label set, or a name registered
        // twice in the same fresh registry: both are programming errors in this function, which
        // the unit tests exercise, so the `expect`s below cannot fire at run time.
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid gauge");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: Vec<f64>| {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
                .expect("valid histogram");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };

        let build_info = gauge_vec(
            "specwatch_build_info",
            "Always 1; the version label carries the specwatch package version.",
            &["version"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        let plain_histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("valid histogram");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };

        let detection_latency_seconds = plain_histogram(
            "specwatch_detection_latency_seconds",
            "Seconds from a window reaching the detection sink to its detection being committed to the store.",
            one_two_five(0.001, 10.0),
        );
        let store_batch_size = plain_histogram(
            "specwatch_store_batch_size",
            "Detections per committed store transaction.",
            (0..=14).map(|i| f64::from(1u32 << i)).collect(),
        );
        let store_commit_seconds = plain_histogram(
            "specwatch_store_commit_seconds",
            "Seconds per committed store transaction, BEGIN to the end of COMMIT.",
            one_two_five(0.0001, 10.0),
        );

        let store_write_errors_total = IntCounter::new(
            "specwatch_store_write_errors_total",
            "Store transactions that failed.",
        )
        .expect("valid counter");
        registry
            .register(Box::new(store_write_errors_total.clone()))
            .expect("unique metric");

        let detections_dropped_total = counter(
            "specwatch_detections_dropped_total",
            "Detections lost before being stored, by reason (store_backlog: the store's queue was full; store_error: the write failed or the store was closed).",
            &["reason"],
        );
        for reason in DETECTION_DROP_REASONS {
            detections_dropped_total
                .with_label_values(&[reason])
                .reset();
        }

        Arc::new(Metrics {
            build_info,
            samples_in_total: counter(
                "specwatch_samples_in_total",
                "IQ samples read from each source.",
                &["source"],
            ),
            windows_framed_total: counter(
                "specwatch_windows_framed_total",
                "Windows framed from each source.",
                &["source"],
            ),
            windows_gate_rejected_total: counter(
                "specwatch_windows_gate_rejected_total",
                "Windows rejected by the energy/SNR gate, per source.",
                &["source"],
            ),
            windows_classified_total: counter(
                "specwatch_windows_classified_total",
                "Windows classified by each model.",
                &["model"],
            ),
            windows_dropped_total: counter(
                "specwatch_windows_dropped_total",
                "Windows dropped before inference, by model and reason (queue_full, nonfinite, shutdown).",
                &["model", "reason"],
            ),
            detections_total: counter(
                "specwatch_detections_total",
                "Detections made, by model and class.",
                &["model", "class"],
            ),
            detections_dropped_total,
            detection_snr_db: histogram(
                "specwatch_detection_snr_db",
                "Estimated SNR of detections in dB.",
                &["model"],
                linear(-20.0, 5.0, 30.0),
            ),
            detection_azimuth_degrees: histogram(
                "specwatch_detection_azimuth_degrees",
                "Estimated azimuth of detections in degrees, by estimator (model: the model's own angle outputs; music, bartlett: the array estimator).",
                &["model", "estimator"],
                linear(-180.0, 15.0, 180.0),
            ),
            bearing_disagreement_degrees: histogram(
                "specwatch_bearing_disagreement_degrees",
                "Absolute difference in degrees (wrapped to 0..180) between the model's azimuth and the array estimator's, per classified window that has both.",
                &["model"],
                DISAGREEMENT_BUCKETS_DEG.to_vec(),
            ),
            inference_latency_seconds: histogram(
                "specwatch_inference_latency_seconds",
                "Seconds per batched model run.",
                &["model"],
                one_two_five(0.0005, 1.0),
            ),
            inference_batch_size: histogram(
                "specwatch_inference_batch_size",
                "Windows per batched model run.",
                &["model"],
                (0..=10).map(|i| f64::from(1u32 << i)).collect(),
            ),
            detection_latency_seconds,
            device_overflows_total: counter(
                "specwatch_device_overflows_total",
                "Overflows reported by the radio, per source.",
                &["source"],
            ),
            stream_errors_total: counter(
                "specwatch_stream_errors_total",
                "Stream errors (timeouts, late commands, broken streams), per source.",
                &["source"],
            ),
            store_write_errors_total,
            store_batch_size,
            store_commit_seconds,
            store_rows: gauge("specwatch_store_rows", "Detections held in the store."),
            source_up: gauge_vec(
                "specwatch_source_up",
                "1 while a source is streaming, 0 otherwise.",
                &["source"],
            ),
            models_loaded: gauge("specwatch_models_loaded", "Models loaded."),
            flowgraph_running: gauge(
                "specwatch_flowgraph_running",
                "1 while the flowgraph runs, 0 otherwise.",
            ),
            registry,
        })
    }

    /// Creates the zero-valued series of one source (samples, windows, gate rejections,
    /// overflows, stream errors, `source_up` = 0), so dashboards and alerts see every configured
    /// source from the first scrape instead of "no data" until its first event.
    pub fn register_source(&self, source: &str) {
        for counter in [
            &self.samples_in_total,
            &self.windows_framed_total,
            &self.windows_gate_rejected_total,
            &self.device_overflows_total,
            &self.stream_errors_total,
        ] {
            counter.with_label_values(&[source]).inc_by(0);
        }
        self.source_up.with_label_values(&[source]).add(0);
    }

    /// Creates the zero-valued series of one model: windows classified, every drop reason
    /// ([`WINDOW_DROP_REASONS`]) and one detection counter per class of its card.
    pub fn register_model(&self, model: &str, classes: &[String]) {
        self.windows_classified_total
            .with_label_values(&[model])
            .inc_by(0);
        for reason in WINDOW_DROP_REASONS {
            self.windows_dropped_total
                .with_label_values(&[model, reason])
                .inc_by(0);
        }
        for class in classes {
            self.detections_total
                .with_label_values(&[model, class.as_str()])
                .inc_by(0);
        }
    }

    /// Creates the zero-valued `specwatch_bearing_disagreement_degrees` series of a model that
    /// gives angles and has an array estimator, so its panel shows 0 rather than "no data"
    /// until the first window.
    pub fn register_bearing_comparison(&self, model: &str) {
        self.bearing_disagreement_degrees
            .with_label_values(&[model]);
    }

    /// Observes the disagreement of the model's azimuth `learned_deg` and the array
    /// estimator's `array_deg` for one window of `model`: `|learned − array|` wrapped to
    /// 0..=180 degrees. Non-finite angles are not observed.
    pub fn observe_bearing_disagreement(&self, model: &str, learned_deg: f32, array_deg: f32) {
        if let Some(d) = azimuth_disagreement_deg(learned_deg, array_deg) {
            self.bearing_disagreement_degrees
                .with_label_values(&[model])
                .observe(d);
        }
    }

    /// Counts one detection made by the sink: `specwatch_detections_total` and, when the
    /// detection has them, the SNR histogram and one azimuth observation per bearing it
    /// carries (`estimator="model"` for the model's, the array estimator's method for its).
    pub fn record_detection(&self, d: &crate::store::Detection) {
        self.detections_total
            .with_label_values(&[d.model.as_str(), d.class.as_str()])
            .inc();
        if let Some(snr) = d.snr_db.filter(|v| v.is_finite()) {
            self.detection_snr_db
                .with_label_values(&[d.model.as_str()])
                .observe(f64::from(snr));
        }
        // The label takes the method only when it is a known one, so its values stay bounded.
        let array_estimator = d
            .doa_method
            .as_deref()
            .and_then(|m| BEARING_ESTIMATORS[1..].iter().copied().find(|e| *e == m));
        for (estimator, azimuth) in [
            (Some(BEARING_ESTIMATORS[0]), d.model_azimuth_deg),
            (array_estimator, d.doa_azimuth_deg),
        ] {
            if let (Some(estimator), Some(az)) = (estimator, azimuth.filter(|v| v.is_finite())) {
                self.detection_azimuth_degrees
                    .with_label_values(&[d.model.as_str(), estimator])
                    .observe(f64::from(az));
            }
        }
    }

    /// The registry's metrics in the Prometheus text exposition format (content type
    /// [`Metrics::CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // The text encoder only fails on metric families that the registry cannot produce
        // (no name, or a metric without a value), so an error here would be a bug in this
        // module; say so in the exposition rather than serving nothing.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            return format!("# specwatch: could not encode the metrics: {e}\n");
        }
        String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
    }

    /// Content type of [`Metrics::render`]'s output.
    pub const CONTENT_TYPE: &'static str = "text/plain; version=0.0.4; charset=utf-8";
}

/// `|a − b|` in degrees, wrapped to 0..=180 (350° and 10° are 20° apart); `None` when either
/// is not finite.
pub fn azimuth_disagreement_deg(a_deg: f32, b_deg: f32) -> Option<f64> {
    let (a, b) = (f64::from(a_deg), f64::from(b_deg));
    if !(a.is_finite() && b.is_finite()) {
        return None;
    }
    Some(((a - b + 180.0).rem_euclid(360.0) - 180.0).abs())
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_the_interface() {
        assert_eq!(linear(-20.0, 5.0, 30.0).len(), 11);
        assert_eq!(linear(-180.0, 15.0, 180.0).first(), Some(&-180.0));
        assert_eq!(linear(-180.0, 15.0, 180.0).last(), Some(&180.0));
        let latency = one_two_five(0.0005, 1.0);
        assert_eq!(latency.first(), Some(&0.0005));
        assert!((latency.last().copied().unwrap_or(0.0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn disagreement_is_the_wrapped_absolute_difference() {
        let d = |a, b| azimuth_disagreement_deg(a, b).expect("finite");
        assert_eq!(d(35.0, 20.0), 15.0);
        assert_eq!(d(20.0, 35.0), 15.0);
        assert_eq!(d(170.0, -170.0), 20.0);
        assert_eq!(d(-179.0, 179.0), 2.0);
        assert_eq!(d(350.0, 10.0), 20.0);
        assert_eq!(d(90.0, -90.0), 180.0);
        assert_eq!(d(0.0, 0.0), 0.0);
        assert_eq!(azimuth_disagreement_deg(f32::NAN, 0.0), None);
        assert_eq!(azimuth_disagreement_deg(0.0, f32::INFINITY), None);
    }

    #[test]
    fn each_bearing_of_a_detection_is_observed_under_its_estimator() {
        let m = Metrics::new();
        let d = crate::store::Detection {
            id: 0,
            time_ns: 0,
            stream: "rx0".into(),
            sample_start: 0,
            sample_count: 128,
            channel: 0,
            channels: vec![0, 1, 2, 3],
            center_freq_hz: None,
            model: "aoa".into(),
            model_version: "1".into(),
            class: "QPSK".into(),
            confidence: 0.9,
            top_k: vec![],
            snr_db: None,
            azimuth_deg: Some(35.0),
            elevation_deg: Some(10.0),
            model_azimuth_deg: Some(35.0),
            model_elevation_deg: Some(10.0),
            doa_azimuth_deg: Some(-100.0),
            doa_elevation_deg: Some(9.0),
            doa_method: Some("bartlett".into()),
            windows: 1,
            observed_ns: 0,
        };
        m.record_detection(&d);
        m.observe_bearing_disagreement("aoa", 35.0, -100.0);
        let text = m.render();
        for line in [
            "specwatch_detection_azimuth_degrees_count{estimator=\"model\",model=\"aoa\"} 1",
            "specwatch_detection_azimuth_degrees_count{estimator=\"bartlett\",model=\"aoa\"} 1",
            "specwatch_detection_azimuth_degrees_bucket{estimator=\"bartlett\",model=\"aoa\",le=\"-90\"} 1",
            "specwatch_bearing_disagreement_degrees_bucket{model=\"aoa\",le=\"90\"} 0",
            "specwatch_bearing_disagreement_degrees_bucket{model=\"aoa\",le=\"135\"} 1",
            "specwatch_bearing_disagreement_degrees_sum{model=\"aoa\"} 135",
        ] {
            assert!(text.contains(line), "missing `{line}` in:\n{text}");
        }
        assert!(!text.contains("estimator=\"music\""));
    }

    #[test]
    fn every_metric_is_rendered_once_used() {
        let m = Metrics::new();
        let text = m.render();
        assert!(text.contains("specwatch_build_info{version=\""));
        assert!(text.contains("specwatch_detections_dropped_total{reason=\"store_backlog\"} 0"));
        assert!(text.contains("specwatch_detection_latency_seconds_bucket"));
    }

    #[test]
    fn registered_sources_and_models_are_exported_at_zero() {
        let m = Metrics::new();
        m.register_source("rx0");
        m.register_model("amc128", &["BPSK".to_string(), "QPSK".to_string()]);
        let text = m.render();
        for line in [
            "specwatch_samples_in_total{source=\"rx0\"} 0",
            "specwatch_windows_gate_rejected_total{source=\"rx0\"} 0",
            "specwatch_device_overflows_total{source=\"rx0\"} 0",
            "specwatch_stream_errors_total{source=\"rx0\"} 0",
            "specwatch_source_up{source=\"rx0\"} 0",
            "specwatch_windows_classified_total{model=\"amc128\"} 0",
            "specwatch_windows_dropped_total{model=\"amc128\",reason=\"queue_full\"} 0",
            "specwatch_windows_dropped_total{model=\"amc128\",reason=\"shutdown\"} 0",
            "specwatch_detections_total{class=\"QPSK\",model=\"amc128\"} 0",
        ] {
            assert!(text.contains(line), "missing `{line}` in:\n{text}");
        }
        // Registering again (a restart of the flowgraph) keeps counts.
        m.samples_in_total.with_label_values(&["rx0"]).inc_by(5);
        m.register_source("rx0");
        assert!(
            m.render()
                .contains("specwatch_samples_in_total{source=\"rx0\"} 5")
        );
    }
}
