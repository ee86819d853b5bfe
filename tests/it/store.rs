//! The detection store against a real SQLite file: round trip, filters, pagination, merging,
//! retention, back-pressure, file checks, and durability across `kill -9`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use specwatch::store::{
    Detection, DetectionQuery, MAX_QUERY_LIMIT, Store, StoreConfig, StoreError, integrity_check,
};
use specwatch::telemetry::Metrics;

use crate::common::scratch;

/// 2024-05-01T12:00:00Z in ns.
pub const T0: i64 = 1_714_564_800_000_000_000;

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as i64
}

/// A detection with every field set: window `i` of 128 samples on `stream`.
pub fn detection(i: u64, class: &str, channel: u32) -> Detection {
    Detection {
        id: 0,
        time_ns: T0 + i as i64 * 1_000_000,
        stream: "rx0".into(),
        sample_start: i * 128,
        sample_count: 128,
        channel,
        channels: vec![channel],
        center_freq_hz: Some(433.92e6),
        model: "amc-cnn".into(),
        model_version: "1.0.0".into(),
        class: class.into(),
        confidence: 0.5 + (i % 50) as f32 / 100.0,
        top_k: vec![
            (class.into(), 0.9),
            ("noise".into(), 0.05),
            ("fm".into(), 0.01),
        ],
        snr_db: Some(10.0 + (i % 7) as f32),
        azimuth_deg: Some(-45.5),
        elevation_deg: Some(3.25),
        model_azimuth_deg: Some(-45.5),
        model_elevation_deg: Some(3.25),
        doa_azimuth_deg: Some(-38.75),
        doa_elevation_deg: Some(2.5),
        doa_method: Some("music".into()),
        windows: 1,
        observed_ns: now_ns(),
    }
}

pub fn open(cfg: &StoreConfig) -> (Store, Arc<Metrics>) {
    let metrics = Metrics::new();
    let store = Store::open(cfg, Arc::clone(&metrics)).expect("open the store");
    (store, metrics)
}

fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        flush_interval: Duration::from_millis(20),
        ..StoreConfig::new(dir.join("detections.sqlite"))
    }
}

/// Polls `done` every 10 ms until it holds; panics with `what` after `timeout`.
fn wait_until(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn all(store: &Store, base: &DetectionQuery) -> Vec<Detection> {
    let mut out = Vec::new();
    let mut q = DetectionQuery {
        limit: MAX_QUERY_LIMIT,
        ..base.clone()
    };
    loop {
        let page = store.query(&q).expect("query");
        out.extend(page.detections);
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => return out,
        }
    }
}

fn ids(ds: &[Detection]) -> Vec<i64> {
    ds.iter().map(|d| d.id).collect()
}

#[test]
fn detections_round_trip_with_every_field() {
    let dir = scratch();
    let (store, _) = open(&config(dir.path()));
    let mut sent = vec![
        detection(0, "bpsk", 0),
        detection(1, "qpsk", 1),
        Detection {
            channels: vec![2, 3, 4, 5],
            center_freq_hz: None,
            snr_db: None,
            azimuth_deg: None,
            elevation_deg: None,
            model_azimuth_deg: None,
            model_elevation_deg: None,
            doa_azimuth_deg: None,
            doa_elevation_deg: None,
            doa_method: None,
            top_k: vec![],
            sample_start: u64::from(u32::MAX) * 4,
            ..detection(2, "fm", 2)
        },
    ];
    for d in &sent {
        assert!(store.writer().submit(d.clone()));
    }
    store.flush().expect("flush");
    let got = all(&store, &DetectionQuery::default());
    assert_eq!(got.len(), 3);
    assert!(got.windows(2).all(|w| w[0].id < w[1].id), "ids ascend");
    for (d, g) in sent.iter_mut().zip(&got) {
        assert!(g.id > 0);
        d.id = g.id;
    }
    assert_eq!(
        got, sent,
        "every field comes back exactly (f32 values included)"
    );
    store.close().expect("close");
}

#[test]
fn a_detection_commits_without_waiting_for_the_flush_interval() {
    let dir = scratch();
    let cfg = StoreConfig {
        flush_interval: Duration::from_secs(30),
        batch_max: 1000,
        ..config(dir.path())
    };
    let (store, metrics) = open(&cfg);
    assert!(store.writer().submit(detection(0, "bpsk", 0)));
    // Group commit: the queue ran dry after one detection, so it commits now, not in 30 s.
    wait_until(
        Duration::from_secs(10),
        "a lone detection was still uncommitted after 10 s (flush interval 30 s)",
        || !all(&store, &DetectionQuery::default()).is_empty(),
    );
    assert_eq!(metrics.store_rows.get(), 1);
    store.close().expect("close");
}

#[test]
fn every_published_detection_is_already_queryable() {
    let dir = scratch();
    let cfg = StoreConfig {
        batch_max: 16,
        ..config(dir.path())
    };
    let (store, metrics) = open(&cfg);
    let mut feed = store.subscribe();
    let writer = store.writer();
    let producer = std::thread::spawn(move || {
        for i in 0..300 {
            assert!(writer.submit(detection(i, "bpsk", 0)));
            if i % 7 == 0 {
                std::thread::sleep(Duration::from_micros(300));
            }
        }
    });
    let mut seen = 0;
    while seen < 300 {
        let d = feed.blocking_recv().expect("the feed ended early");
        // Published after its commit: a query made now must already return it.
        let page = store
            .query(&DetectionQuery {
                since_ns: Some(d.time_ns),
                until_ns: Some(d.time_ns + 1),
                ..DetectionQuery::default()
            })
            .expect("query");
        assert!(
            page.detections.iter().any(|q| q.id == d.id),
            "detection {} was published before a query could see it",
            d.id
        );
        seen += 1;
    }
    producer.join().expect("producer");
    assert_eq!(metrics.store_rows.get(), 300);
    store.close().expect("close");
}

#[test]
fn detections_commit_by_themselves_without_a_flush() {
    let dir = scratch();
    let cfg = StoreConfig {
        flush_interval: Duration::from_millis(50),
        batch_max: 10,
        ..config(dir.path())
    };
    let (store, metrics) = open(&cfg);
    for i in 0..25 {
        assert!(store.writer().submit(detection(i, "bpsk", 0)));
    }
    // No flush: the writer commits them on its own (at most 10 per transaction).
    wait_until(
        Duration::from_secs(10),
        "the writer did not commit by itself",
        || all(&store, &DetectionQuery::default()).len() == 25,
    );
    assert_eq!(metrics.store_rows.get(), 25);
    assert_eq!(metrics.detection_latency_seconds.get_sample_count(), 25);
}

#[test]
fn every_filter_selects_what_it_says() {
    let dir = scratch();
    let (store, _) = open(&config(dir.path()));
    let classes = ["bpsk", "qpsk", "fm", "am-dsb"];
    let mut sent = Vec::new();
    for i in 0..400u64 {
        let mut d = detection(i, classes[(i % 4) as usize], (i % 3) as u32);
        if i % 10 == 0 {
            d.channels = vec![d.channel, 7];
        }
        d.model = if i % 5 == 0 { "aoa-net" } else { "amc-cnn" }.into();
        d.confidence = (i % 100) as f32 / 100.0;
        sent.push(d);
    }
    for d in &sent {
        assert!(store.writer().submit(d.clone()));
    }
    store.flush().expect("flush");
    let stored = all(&store, &DetectionQuery::default());
    assert_eq!(stored.len(), 400);

    let check = |q: DetectionQuery, keep: &dyn Fn(&Detection) -> bool, what: &str| {
        let expected: Vec<i64> = stored.iter().filter(|d| keep(d)).map(|d| d.id).collect();
        assert!(
            !expected.is_empty(),
            "{what}: the fixture selects something"
        );
        assert!(
            expected.len() < stored.len(),
            "{what}: the fixture leaves something out"
        );
        assert_eq!(ids(&all(&store, &q)), expected, "{what}");
    };
    let since = T0 + 100 * 1_000_000;
    let until = T0 + 250 * 1_000_000;
    check(
        DetectionQuery {
            since_ns: Some(since),
            ..Default::default()
        },
        &|d| d.time_ns >= since,
        "since (inclusive)",
    );
    check(
        DetectionQuery {
            until_ns: Some(until),
            ..Default::default()
        },
        &|d| d.time_ns < until,
        "until (exclusive)",
    );
    check(
        DetectionQuery {
            class: Some("fm".into()),
            ..Default::default()
        },
        &|d| d.class == "fm",
        "class",
    );
    check(
        DetectionQuery {
            min_confidence: Some(0.75),
            ..Default::default()
        },
        &|d| d.confidence >= 0.75,
        "min_confidence",
    );
    check(
        DetectionQuery {
            channel: Some(1),
            ..Default::default()
        },
        &|d| d.channel == 1,
        "channel (first channel)",
    );
    check(
        DetectionQuery {
            channel: Some(7),
            ..Default::default()
        },
        &|d| d.channels.contains(&7),
        "channel (one of several)",
    );
    check(
        DetectionQuery {
            model: Some("aoa-net".into()),
            ..Default::default()
        },
        &|d| d.model == "aoa-net",
        "model",
    );
    check(
        DetectionQuery {
            since_ns: Some(since),
            until_ns: Some(until),
            class: Some("bpsk".into()),
            min_confidence: Some(0.3),
            channel: Some(0),
            model: Some("amc-cnn".into()),
            ..Default::default()
        },
        &|d| {
            d.time_ns >= since
                && d.time_ns < until
                && d.class == "bpsk"
                && d.confidence >= 0.3
                && d.channels.contains(&0)
                && d.model == "amc-cnn"
        },
        "all filters together",
    );
    let none = store
        .query(&DetectionQuery {
            class: Some("ofdm".into()),
            ..Default::default()
        })
        .expect("query");
    assert!(none.detections.is_empty() && none.next_cursor.is_none());
}

#[test]
fn time_filters_stay_exact_when_times_arrive_out_of_order() {
    // Interleaved streams, a late replay of old windows and a clock step back: time does not
    // follow the id order, and the time filters must still select exactly.
    let dir = scratch();
    let (store, _) = open(&config(dir.path()));
    let second = 1_000_000_000i64;
    let mut times = Vec::new();
    for i in 0..600i64 {
        // Two streams whose clocks disagree by up to 3 s.
        times.push(T0 + i * second / 10 + if i % 2 == 0 { 0 } else { 3 * second });
    }
    for i in 0..100i64 {
        times.push(T0 - 3600 * second + i * second); // a replay of an hour ago
    }
    for i in 0..200i64 {
        times.push(T0 + 20 * second + i * second / 10); // after a clock step back
    }
    let writer = store.writer();
    for (i, t) in times.iter().enumerate() {
        let d = Detection {
            time_ns: *t,
            ..detection(i as u64, "bpsk", (i % 3) as u32)
        };
        assert!(writer.submit(d));
        if i % 97 == 0 {
            store.flush().expect("flush");
        }
    }
    store.flush().expect("flush");
    let stored = all(&store, &DetectionQuery::default());
    assert_eq!(stored.len(), times.len());
    let at = |s: f64| T0 + (s * 1e9) as i64;
    let windows = [
        (Some(at(-3600.0)), Some(at(-3590.0))),
        (Some(at(10.0)), Some(at(12.0))),
        (Some(at(21.0)), Some(at(30.0))),
        (Some(at(59.0)), None),
        (None, Some(at(-3000.0))),
        (Some(at(0.0)), Some(at(0.5))),
        (Some(at(90.0)), None),
        (None, Some(at(-7200.0))),
    ];
    for (since_ns, until_ns) in windows {
        for channel in [None, Some(1)] {
            let expected: Vec<i64> = stored
                .iter()
                .filter(|d| since_ns.is_none_or(|s| d.time_ns >= s))
                .filter(|d| until_ns.is_none_or(|u| d.time_ns < u))
                .filter(|d| channel.is_none_or(|c| d.channel == c))
                .map(|d| d.id)
                .collect();
            let q = DetectionQuery {
                since_ns,
                until_ns,
                channel,
                limit: 7,
                ..Default::default()
            };
            assert_eq!(
                ids(&all(&store, &q)),
                expected,
                "since {since_ns:?} until {until_ns:?} channel {channel:?}"
            );
        }
    }
}

#[test]
fn pagination_covers_every_row_exactly_once_while_rows_arrive() {
    let dir = scratch();
    let (store, _) = open(&config(dir.path()));
    let writer = store.writer();
    for i in 0..2345 {
        assert!(writer.submit(detection(i, if i % 2 == 0 { "bpsk" } else { "qpsk" }, 0)));
    }
    store.flush().expect("flush");
    let before = ids(&all(&store, &DetectionQuery::default()));
    assert_eq!(before.len(), 2345);

    let mut seen = Vec::new();
    let mut q = DetectionQuery {
        limit: 100,
        ..Default::default()
    };
    let mut pages = 0;
    loop {
        let page = store.query(&q).expect("query");
        assert!(page.detections.len() <= 100);
        seen.extend(ids(&page.detections));
        pages += 1;
        if pages == 5 {
            // Rows committed while a client pages through come after its cursor.
            for i in 2345..2400 {
                assert!(writer.submit(detection(i, "fm", 0)));
            }
            store.flush().expect("flush");
        }
        match page.next_cursor {
            Some(c) => {
                assert_eq!(Some(c), page.detections.last().map(|d| d.id));
                q.cursor = Some(c);
            }
            None => break,
        }
    }
    assert_eq!(pages, 24, "2400 rows at 100 per page");
    let unique: BTreeSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no row twice");
    assert_eq!(seen.len(), 2400, "every row once");
    assert!(before.iter().all(|id| unique.contains(id)));
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "id order");

    // With a filter, pages hold only matching rows and still cover all of them.
    let bpsk = all(
        &store,
        &DetectionQuery {
            class: Some("bpsk".into()),
            limit: 7,
            ..Default::default()
        },
    );
    assert_eq!(bpsk.len(), 1173);
    assert!(bpsk.iter().all(|d| d.class == "bpsk"));
}

#[test]
fn query_limits_are_enforced() {
    let dir = scratch();
    let (store, _) = open(&config(dir.path()));
    for (limit, ok) in [
        (0, false),
        (1, true),
        (MAX_QUERY_LIMIT, true),
        (MAX_QUERY_LIMIT + 1, false),
    ] {
        let r = store.query(&DetectionQuery {
            limit,
            ..Default::default()
        });
        match (r, ok) {
            (Ok(_), true) => {}
            (Err(StoreError::InvalidQuery { parameter, message }), false) => {
                assert_eq!(parameter, "limit");
                assert!(message.contains("10000"), "{message}");
            }
            (other, _) => panic!("limit {limit}: unexpected {other:?}"),
        }
    }
    let r = store.query(&DetectionQuery {
        min_confidence: Some(1.5),
        ..Default::default()
    });
    assert!(matches!(
        r,
        Err(StoreError::InvalidQuery {
            parameter: "min_confidence",
            ..
        })
    ));
}

#[test]
fn merging_joins_runs_of_one_class_and_breaks_on_change_or_gap() {
    let dir = scratch();
    let cfg = StoreConfig {
        merge: true,
        merge_max_gap_samples: 64,
        ..config(dir.path())
    };
    let (store, _) = open(&cfg);
    let mut events = store.subscribe();
    let w = store.writer();
    let window = |start: u64, class: &str, channel: u32, confidence: f32, snr: f32| Detection {
        sample_start: start,
        confidence,
        snr_db: Some(snr),
        top_k: vec![(class.into(), confidence)],
        ..detection(0, class, channel)
    };
    // Run A on channel 0: three contiguous windows, then one 64 samples later (joins).
    assert!(w.submit(window(0, "bpsk", 0, 0.6, 10.0)));
    assert!(w.submit(window(128, "bpsk", 0, 0.9, 20.0)));
    // Channel 1 between them forms its own record.
    assert!(w.submit(window(128, "bpsk", 1, 0.7, 5.0)));
    store.flush().expect("flush");
    // The run continues across transactions.
    assert!(w.submit(window(256, "bpsk", 0, 0.7, 0.0)));
    assert!(w.submit(window(448, "bpsk", 0, 0.8, 30.0)));
    // Gap of 65 samples after 576: a new record.
    assert!(w.submit(window(641, "bpsk", 0, 0.5, 1.0)));
    // Class change: a new record, and the old run is closed.
    assert!(w.submit(window(769, "qpsk", 0, 0.5, 1.0)));
    assert!(w.submit(window(897, "bpsk", 0, 0.5, 1.0)));
    store.flush().expect("flush");

    let got = all(&store, &DetectionQuery::default());
    let summary: Vec<(u32, &str, u64, u64, u32)> = got
        .iter()
        .map(|d| {
            (
                d.channel,
                d.class.as_str(),
                d.sample_start,
                d.sample_count,
                d.windows,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (0, "bpsk", 0, 576, 4),
            (1, "bpsk", 128, 128, 1),
            (0, "bpsk", 641, 128, 1),
            (0, "qpsk", 769, 128, 1),
            (0, "bpsk", 897, 128, 1),
        ]
    );
    let run = &got[0];
    assert_eq!(run.confidence, 0.9, "confidence is the maximum");
    assert_eq!(
        run.top_k,
        vec![("bpsk".to_owned(), 0.9)],
        "top-k of the most confident window"
    );
    assert!(
        (run.snr_db.expect("snr") - 15.0).abs() < 1e-5,
        "SNR is the mean of 10, 20, 0, 30"
    );

    // The feed sent the run's record when a commit created it and again, same id, each time a
    // commit grew it; every other record once. The writer may commit before a flush asks it
    // to, so how the submissions above fall into commits is not fixed: at least one commit per
    // flush, at most one per submission.
    let mut sent = Vec::new();
    while let Ok(d) = events.try_recv() {
        sent.push((d.id, d.windows));
    }
    assert_eq!(
        sent.first().map(|s| s.0),
        Some(run.id),
        "the run came first: {sent:?}"
    );
    let run_sent: Vec<u32> = sent
        .iter()
        .filter(|(id, _)| *id == run.id)
        .map(|&(_, windows)| windows)
        .collect();
    assert!(
        run_sent.windows(2).all(|p| p[0] < p[1]) && run_sent.last() == Some(&4),
        "the run's record grows to 4 windows under one id: {sent:?}"
    );
    assert!(
        (2..=4).contains(&run_sent.len()),
        "the run was sent once per commit that touched it (2 to 4 of them): {sent:?}"
    );
    let mut others: Vec<(i64, u32)> = sent
        .iter()
        .filter(|(id, _)| *id != run.id)
        .copied()
        .collect();
    others.sort_unstable();
    let mut want: Vec<(i64, u32)> = got[1..].iter().map(|d| (d.id, 1)).collect();
    want.sort_unstable();
    assert_eq!(others, want, "every other record sent once: {sent:?}");
}

#[test]
fn merging_off_keeps_every_window() {
    let dir = scratch();
    let (store, _) = open(&config(dir.path()));
    for i in 0..5 {
        assert!(store.writer().submit(detection(i, "bpsk", 0)));
    }
    store.flush().expect("flush");
    assert_eq!(all(&store, &DetectionQuery::default()).len(), 5);
}

#[test]
fn retention_by_row_count_keeps_the_newest() {
    let dir = scratch();
    let cfg = StoreConfig {
        retention_max_rows: Some(100),
        ..config(dir.path())
    };
    let (store, metrics) = open(&cfg);
    for i in 0..250 {
        let mut d = detection(i, "bpsk", (i % 2) as u32);
        d.channels.push(9);
        assert!(store.writer().submit(d));
    }
    store.flush().expect("flush");
    let before = ids(&all(&store, &DetectionQuery::default()));
    assert_eq!(store.apply_retention().expect("retention"), 150);
    let after = ids(&all(&store, &DetectionQuery::default()));
    assert_eq!(after, before[150..].to_vec());
    assert_eq!(metrics.store_rows.get(), 100);
    assert_eq!(
        all(
            &store,
            &DetectionQuery {
                channel: Some(9),
                ..Default::default()
            }
        )
        .len(),
        100
    );
    store.close().expect("close");

    // No orphaned channel rows, and ids keep growing after deletes (cursors stay valid).
    let conn = rusqlite::Connection::open(&cfg.path).expect("open with rusqlite");
    let orphans: i64 = conn
        .query_row(
            "SELECT count(*) FROM detection_channels WHERE detection_id NOT IN (SELECT id FROM detections)",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(orphans, 0);
    drop(conn);
    let (store, metrics) = open(&cfg);
    assert_eq!(metrics.store_rows.get(), 100, "row count read at open");
    assert!(store.writer().submit(detection(999, "fm", 0)));
    store.flush().expect("flush");
    let newest = all(
        &store,
        &DetectionQuery {
            class: Some("fm".into()),
            ..Default::default()
        },
    );
    assert!(newest[0].id > *before.last().expect("rows"));
}

#[test]
fn retention_by_age_counts_from_when_a_detection_was_observed() {
    let dir = scratch();
    let cfg = StoreConfig {
        retention_max_age: Some(Duration::from_secs(3600)),
        ..config(dir.path())
    };
    let (store, metrics) = open(&cfg);
    let hour = 3_600_000_000_000i64;
    for i in 0..30u64 {
        let mut d = detection(i, "bpsk", 0);
        // Old captures replayed now are kept: age is taken from observed_ns, not time_ns.
        d.time_ns = T0 - 400 * 24 * hour;
        d.observed_ns = if i < 10 {
            now_ns() - 2 * hour
        } else {
            now_ns() - hour / 2
        };
        assert!(store.writer().submit(d));
    }
    store.flush().expect("flush");
    assert_eq!(store.apply_retention().expect("retention"), 10);
    let left = all(&store, &DetectionQuery::default());
    assert_eq!(left.len(), 20);
    assert!(left.iter().all(|d| d.sample_start >= 10 * 128));
    assert_eq!(metrics.store_rows.get(), 20);
}

/// The value of the sample `series` (name and labels exactly as exposed) in `text`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} is not exposed"))
        .parse()
        .expect("a number")
}

#[test]
fn batches_grow_under_load_up_to_batch_max_and_are_measured() {
    let dir = scratch();
    let cfg = StoreConfig {
        batch_max: 8,
        ..config(dir.path())
    };
    let (store, metrics) = open(&cfg);
    // Another connection holds the write lock, so the writer stalls in its first commit while
    // 100 detections queue up behind it.
    let blocker = rusqlite::Connection::open(&cfg.path).expect("open with rusqlite");
    blocker
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let writer = store.writer();
    for i in 0..100 {
        assert!(writer.submit(detection(i, "bpsk", 0)));
    }
    let blocked = Duration::from_millis(300);
    std::thread::sleep(blocked);
    blocker.execute_batch("COMMIT").expect("release the lock");
    store.flush().expect("flush");
    assert_eq!(all(&store, &DetectionQuery::default()).len(), 100);

    let text = metrics.render();
    let commits = sample(&text, "specwatch_store_batch_size_count");
    assert_eq!(sample(&text, "specwatch_store_batch_size_sum"), 100.0);
    assert_eq!(
        sample(&text, "specwatch_store_batch_size_bucket{le=\"8\"}"),
        commits,
        "a transaction held more than batch_max = 8 detections:\n{text}"
    );
    assert!(
        sample(&text, "specwatch_store_batch_size_bucket{le=\"4\"}") < commits,
        "the queued detections were committed in batches of at most 4, not up to 8:\n{text}"
    );
    assert!(commits >= 13.0, "100 detections in {commits} transactions");
    assert_eq!(
        sample(&text, "specwatch_store_commit_seconds_count"),
        commits
    );
    // The first transaction waited for the lock.
    assert!(
        sample(&text, "specwatch_store_commit_seconds_sum") >= blocked.as_secs_f64() * 0.9,
        "{text}"
    );
    store.close().expect("close");
}

#[test]
fn a_full_queue_drops_and_counts_without_blocking() {
    let dir = scratch();
    let cfg = StoreConfig {
        queue_capacity: 4,
        batch_max: 1,
        ..config(dir.path())
    };
    let (store, metrics) = open(&cfg);
    // Another connection holds the write lock, so the writer thread stalls in its first
    // commit and the queue fills.
    let blocker = rusqlite::Connection::open(&cfg.path).expect("open with rusqlite");
    blocker
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let writer = store.writer();
    let started = Instant::now();
    let accepted = (0..100)
        .filter(|&i| writer.submit(detection(i, "bpsk", 0)))
        .count();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "submit never blocks"
    );
    let dropped = metrics
        .detections_dropped_total
        .with_label_values(&["store_backlog"])
        .get();
    assert_eq!(dropped as usize, 100 - accepted, "every refusal is counted");
    // Queue of 4, plus at most one batch in the writer's hands.
    assert!((4..=6).contains(&accepted), "accepted {accepted}");
    blocker.execute_batch("COMMIT").expect("release the lock");
    store.flush().expect("flush");
    assert_eq!(
        all(&store, &DetectionQuery::default()).len(),
        accepted,
        "nothing accepted is lost"
    );
    assert_eq!(metrics.store_write_errors_total.get(), 0);
    assert!(store.is_writable());
}

#[test]
fn unstorable_detections_are_dropped_and_counted() {
    let dir = scratch();
    let (store, metrics) = open(&config(dir.path()));
    let w = store.writer();
    assert!(w.submit(Detection {
        confidence: f32::NAN,
        ..detection(0, "bpsk", 0)
    }));
    assert!(w.submit(Detection {
        snr_db: Some(f32::INFINITY),
        model_azimuth_deg: Some(f32::NAN),
        doa_azimuth_deg: Some(f32::NEG_INFINITY),
        doa_elevation_deg: Some(f32::NAN),
        ..detection(1, "bpsk", 0)
    }));
    store.flush().expect("flush");
    let got = all(&store, &DetectionQuery::default());
    assert_eq!(got.len(), 1, "the NaN-confidence detection is refused");
    assert_eq!(got[0].snr_db, None, "a non-finite SNR is stored as unknown");
    assert_eq!(
        (
            got[0].model_azimuth_deg,
            got[0].model_elevation_deg,
            got[0].doa_azimuth_deg,
            got[0].doa_method.as_deref()
        ),
        (None, Some(3.25), None, None),
        "non-finite angles are stored as unknown, and a method without an angle is dropped"
    );
    assert_eq!(
        metrics
            .detections_dropped_total
            .with_label_values(&["store_error"])
            .get(),
        1
    );
}

#[test]
fn a_closed_store_refuses_and_counts() {
    let dir = scratch();
    let (store, metrics) = open(&config(dir.path()));
    let writer = store.writer();
    assert!(writer.submit(detection(0, "bpsk", 0)));
    let reader = store.clone();
    store.close().expect("close");
    assert_eq!(
        all(&reader, &DetectionQuery::default()).len(),
        1,
        "close committed what was queued"
    );
    assert!(!writer.submit(detection(1, "bpsk", 0)));
    assert_eq!(
        metrics
            .detections_dropped_total
            .with_label_values(&["store_error"])
            .get(),
        1
    );
    assert!(!reader.is_writable());
    assert!(matches!(
        reader.flush(),
        Err(StoreError::WriterStopped { .. })
    ));
}

#[test]
fn subscribers_receive_committed_detections_with_their_ids() {
    let dir = scratch();
    let (store, _) = open(&config(dir.path()));
    let mut events = store.subscribe();
    for i in 0..3 {
        assert!(store.writer().submit(detection(i, "bpsk", 0)));
    }
    store.flush().expect("flush");
    let stored = ids(&all(&store, &DetectionQuery::default()));
    let received: Vec<i64> = (0..3)
        .map(|_| events.try_recv().expect("an event").id)
        .collect();
    assert_eq!(received, stored);
}

/// The schema of a version-1 store, as specwatch wrote it (a frozen copy of
/// `src/store/schema.rs` at version 1, with the pragmas it set): an existing station's file.
const V1_STORE_SQL: &str = "
CREATE TABLE detections (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ns        INTEGER NOT NULL,
    stream         TEXT    NOT NULL,
    sample_start   INTEGER NOT NULL,
    sample_count   INTEGER NOT NULL,
    channel        INTEGER NOT NULL,
    channels       TEXT    NOT NULL,
    center_freq_hz REAL,
    model          TEXT    NOT NULL,
    model_version  TEXT    NOT NULL,
    class          TEXT    NOT NULL,
    confidence     REAL    NOT NULL,
    top_k          TEXT    NOT NULL,
    snr_db         REAL,
    azimuth_deg    REAL,
    elevation_deg  REAL,
    windows        INTEGER NOT NULL,
    observed_ns    INTEGER NOT NULL,
    time_high_ns   INTEGER NOT NULL
);
CREATE INDEX detections_by_time ON detections (time_ns);
CREATE INDEX detections_by_time_high ON detections (time_high_ns);
CREATE INDEX detections_by_class ON detections (class, id);
CREATE INDEX detections_by_model ON detections (model, id);
CREATE INDEX detections_by_observed ON detections (observed_ns);
CREATE TABLE detection_channels (
    detection_id INTEGER NOT NULL,
    channel      INTEGER NOT NULL,
    PRIMARY KEY (detection_id, channel)
) WITHOUT ROWID;
CREATE INDEX detection_channels_by_channel ON detection_channels (channel, detection_id);
CREATE TABLE store_meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO store_meta (key, value) VALUES ('max_time_lag_ns', 0);
PRAGMA application_id = 1399871348;
PRAGMA user_version = 1;
";

/// `(name, declared type, nullable)` of every column of `detections` in `path`, in order.
fn detection_columns(path: &Path) -> Vec<(String, String, bool)> {
    let conn = rusqlite::Connection::open(path).expect("open");
    let mut stmt = conn
        .prepare("SELECT name, type, \"notnull\" FROM pragma_table_info('detections') ORDER BY cid")
        .expect("table_info");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? == 0)))
        .expect("columns")
        .collect::<Result<_, _>>()
        .expect("columns")
}

fn user_version(path: &Path) -> i64 {
    rusqlite::Connection::open(path)
        .and_then(|c| c.pragma_query_value(None, "user_version", |r| r.get(0)))
        .expect("read user_version")
}

#[test]
fn a_version_1_store_is_upgraded_in_place_keeping_its_rows() {
    let dir = scratch();
    let cfg = config(dir.path());
    // A station's store written by the version-1 schema, with one detection carrying a bearing
    // (then the only bearing a detection had).
    {
        let conn = rusqlite::Connection::open(&cfg.path).expect("create a v1 store");
        conn.execute_batch(V1_STORE_SQL).expect("v1 schema");
        conn.execute(
            "INSERT INTO detections (time_ns, stream, sample_start, sample_count, channel, \
             channels, center_freq_hz, model, model_version, class, confidence, top_k, snr_db, \
             azimuth_deg, elevation_deg, windows, observed_ns, time_high_ns) VALUES \
             (?1, 'x300', 4096, 1024, 0, '[0,1,2,3]', 2.45e9, 'amc1024', '1.0.0', 'QPSK', 0.875, \
             '[[\"QPSK\",0.875]]', 12.5, -31.25, 4.5, 1, ?2, ?1)",
            rusqlite::params![T0, now_ns()],
        )
        .expect("a v1 row");
        conn.execute_batch("INSERT INTO detection_channels VALUES (1, 0), (1, 1), (1, 2), (1, 3)")
            .expect("its channels");
    }
    assert_eq!(user_version(&cfg.path), 1);

    let (store, metrics) = open(&cfg);
    assert_eq!(metrics.store_rows.get(), 1);
    let rows = all(&store, &DetectionQuery::default());
    assert_eq!(rows.len(), 1);
    let old = &rows[0];
    assert_eq!(
        (
            old.id,
            old.stream.as_str(),
            old.class.as_str(),
            old.channels.clone()
        ),
        (1, "x300", "QPSK", vec![0, 1, 2, 3])
    );
    assert_eq!((old.sample_start, old.sample_count), (4096, 1024));
    assert_eq!(old.top_k, vec![("QPSK".to_owned(), 0.875)]);
    assert_eq!(
        (old.azimuth_deg, old.elevation_deg),
        (Some(-31.25), Some(4.5)),
        "the old row keeps its (station's) bearing"
    );
    assert_eq!(
        (
            old.model_azimuth_deg,
            old.model_elevation_deg,
            old.doa_azimuth_deg,
            old.doa_elevation_deg,
            old.doa_method.as_deref()
        ),
        (None, None, None, None, None),
        "which estimator gave a version-1 bearing was not recorded"
    );
    // The channel filter still finds the old row; new rows carry both bearings.
    let on_channel_3 = all(
        &store,
        &DetectionQuery {
            channel: Some(3),
            ..DetectionQuery::default()
        },
    );
    assert_eq!(ids(&on_channel_3), [1]);
    let mut new = detection(1, "bpsk", 0);
    assert!(store.writer().submit(new.clone()));
    store.flush().expect("flush");
    let rows = all(&store, &DetectionQuery::default());
    assert_eq!(rows.len(), 2);
    new.id = rows[1].id;
    assert_eq!(
        rows[1], new,
        "every field of a new row, both bearings included"
    );
    store.close().expect("close");

    // Upgraded to the current version, with the same columns a new store gets, in place.
    assert_eq!(user_version(&cfg.path), specwatch::store::SCHEMA_VERSION);
    assert_eq!(specwatch::store::SCHEMA_VERSION, 2);
    let fresh = StoreConfig::new(dir.path().join("fresh.sqlite"));
    open(&fresh).0.close().expect("close");
    let upgraded_columns = detection_columns(&cfg.path);
    assert_eq!(upgraded_columns, detection_columns(&fresh.path));
    for column in [
        "model_azimuth_deg",
        "model_elevation_deg",
        "doa_azimuth_deg",
        "doa_elevation_deg",
        "doa_method",
    ] {
        assert!(
            upgraded_columns
                .iter()
                .any(|(name, _, nullable)| name == column && *nullable),
            "nullable column {column} in {upgraded_columns:?}"
        );
    }
    integrity_check(&cfg.path).expect("intact after the upgrade");

    // Opening it again upgrades nothing more and loses nothing.
    let (store, metrics) = open(&cfg);
    assert_eq!(metrics.store_rows.get(), 2);
    assert_eq!(all(&store, &DetectionQuery::default()), rows);
    store.close().expect("close");
    assert_eq!(user_version(&cfg.path), 2);
}

#[test]
fn merged_runs_keep_every_bearing_of_their_most_confident_window() {
    let dir = scratch();
    let cfg = StoreConfig {
        merge: true,
        ..config(dir.path())
    };
    let (store, _) = open(&cfg);
    let window = |start: u64, confidence: f32, model_az: f32, doa_az: Option<f32>| Detection {
        sample_start: start,
        confidence,
        azimuth_deg: Some(model_az),
        model_azimuth_deg: Some(model_az),
        model_elevation_deg: Some(confidence),
        doa_azimuth_deg: doa_az,
        doa_elevation_deg: doa_az.map(|_| -confidence),
        doa_method: doa_az.map(|_| "music".to_owned()),
        ..detection(0, "bpsk", 0)
    };
    let w = store.writer();
    assert!(w.submit(window(0, 0.6, 10.0, Some(12.0))));
    // The most confident window: its bearings (and its lack of an array estimate) win.
    assert!(w.submit(window(128, 0.9, 30.0, None)));
    assert!(w.submit(window(256, 0.7, 50.0, Some(52.0))));
    store.flush().expect("flush");
    let got = all(&store, &DetectionQuery::default());
    assert_eq!(got.len(), 1, "one run: {got:?}");
    let run = &got[0];
    assert_eq!(run.windows, 3);
    assert_eq!(
        (
            run.azimuth_deg,
            run.model_azimuth_deg,
            run.model_elevation_deg
        ),
        (Some(30.0), Some(30.0), Some(0.9))
    );
    assert_eq!(
        (
            run.doa_azimuth_deg,
            run.doa_elevation_deg,
            run.doa_method.as_deref()
        ),
        (None, None, None),
        "the array estimate of the most confident window, not of another window"
    );

    // And a run whose most confident window has both keeps both, method included.
    assert!(w.submit(window(1024, 0.95, -20.0, Some(-24.5))));
    assert!(w.submit(window(1152, 0.5, 70.0, Some(71.0))));
    store.flush().expect("flush");
    let got = all(&store, &DetectionQuery::default());
    let run = got.last().expect("second run");
    assert_eq!(
        (
            run.model_azimuth_deg,
            run.doa_azimuth_deg,
            run.doa_elevation_deg,
            run.doa_method.as_deref()
        ),
        (Some(-20.0), Some(-24.5), Some(-0.95), Some("music"))
    );
    store.close().expect("close");
}

#[test]
fn bad_files_are_refused_with_their_path() {
    let dir = scratch();
    let metrics = Metrics::new();
    let expect_err = |cfg: &StoreConfig| -> StoreError {
        match Store::open(cfg, Arc::clone(&metrics)) {
            Ok(_) => panic!("{} opened", cfg.path.display()),
            Err(e) => {
                let text = e.to_string();
                assert!(text.contains(&cfg.path.display().to_string()), "{text}");
                e
            }
        }
    };

    let missing_folder = StoreConfig::new(dir.path().join("no/such/folder/d.sqlite"));
    let e = expect_err(&missing_folder);
    assert!(matches!(e, StoreError::NotWritable { .. }), "{e}");
    assert!(e.to_string().contains("does not exist"), "{e}");

    let under_a_file = dir.path().join("plain");
    std::fs::write(&under_a_file, b"x").expect("write");
    let e = expect_err(&StoreConfig::new(under_a_file.join("d.sqlite")));
    assert!(matches!(e, StoreError::NotWritable { .. }), "{e}");

    let garbage = dir.path().join("garbage.sqlite");
    std::fs::write(&garbage, vec![0x5a; 8192]).expect("write");
    let e = expect_err(&StoreConfig::new(&garbage));
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");

    let foreign = dir.path().join("foreign.sqlite");
    rusqlite::Connection::open(&foreign)
        .and_then(|c| c.execute_batch("CREATE TABLE other (x INTEGER)"))
        .expect("make a foreign database");
    let e = expect_err(&StoreConfig::new(&foreign));
    assert!(matches!(e, StoreError::Foreign { .. }), "{e}");

    let newer = StoreConfig::new(dir.path().join("newer.sqlite"));
    let (store, _) = open(&newer);
    store.close().expect("close");
    rusqlite::Connection::open(&newer.path)
        .and_then(|c| c.pragma_update(None, "user_version", 99))
        .expect("bump the version");
    let e = expect_err(&newer);
    match e {
        StoreError::NewerSchema {
            found, supported, ..
        } => {
            assert_eq!(found, 99);
            assert_eq!(supported, specwatch::store::SCHEMA_VERSION);
        }
        other => panic!("expected NewerSchema, got {other}"),
    }

    let bad_config = StoreConfig {
        batch_max: 0,
        ..StoreConfig::new(dir.path().join("c.sqlite"))
    };
    let e = expect_err(&bad_config);
    assert!(e.to_string().contains("batch_max"), "{e}");
}

#[test]
fn integrity_check_passes_a_good_store_and_fails_a_damaged_one() {
    let dir = scratch();
    let cfg = config(dir.path());
    let (store, _) = open(&cfg);
    for i in 0..3000 {
        assert!(store.writer().submit(detection(i, "bpsk", 0)));
    }
    store.flush().expect("flush");
    store.integrity_check().expect("a fresh store is intact");
    store.close().expect("close");
    integrity_check(&cfg.path).expect("intact after close");

    // Overwrite pages in the middle of the file (past the header page).
    let mut bytes = std::fs::read(&cfg.path).expect("read");
    assert!(bytes.len() > 64 * 1024, "the store spans many pages");
    for b in &mut bytes[16 * 1024..48 * 1024] {
        *b = 0xa5;
    }
    std::fs::write(&cfg.path, bytes).expect("write");
    let e = integrity_check(&cfg.path).expect_err("damage is found");
    assert!(
        matches!(e, StoreError::Integrity { .. } | StoreError::Corrupt { .. }),
        "{e}"
    );
    assert!(e.to_string().contains(&cfg.path.display().to_string()));

    let e = integrity_check(&dir.path().join("absent.sqlite")).expect_err("no file");
    assert!(matches!(e, StoreError::Missing { .. }), "{e}");
}

const KILL_CHILD_ENV: &str = "SPECWATCH_TEST_STORE_KILL_CHILD";
const COMMITTED_PREFIX: &str = "committed-id ";

/// The writer half of `committed_detections_survive_kill_9`: writes until killed, printing the
/// id of every detection a query has returned.
#[test]
#[ignore = "started by committed_detections_survive_kill_9 in a child process"]
fn kill_9_child_writer() {
    let path = std::env::var_os(KILL_CHILD_ENV)
        .expect("run only by committed_detections_survive_kill_9, which sets the database path");
    let cfg = StoreConfig {
        flush_interval: Duration::from_millis(2),
        batch_max: 64,
        ..StoreConfig::new(path)
    };
    let (store, _) = open(&cfg);
    let writer = store.writer();
    let mut cursor = 0;
    let mut i = 0u64;
    // Ends by itself should the parent test fail to kill it.
    let give_up = Instant::now() + Duration::from_secs(120);
    while Instant::now() < give_up {
        for _ in 0..40 {
            writer.submit(detection(i, "bpsk", (i % 4) as u32));
            i += 1;
        }
        // Report what queries return (not what was submitted): the API's view.
        let page = store
            .query(&DetectionQuery {
                cursor: Some(cursor),
                limit: MAX_QUERY_LIMIT,
                ..Default::default()
            })
            .expect("query");
        let mut out = std::io::stdout().lock();
        for d in &page.detections {
            use std::io::Write;
            writeln!(out, "{COMMITTED_PREFIX}{}", d.id).expect("report");
            cursor = d.id;
        }
        use std::io::Write;
        out.flush().expect("report");
    }
    panic!("the parent test did not kill this writer within 120 s");
}

#[test]
fn committed_detections_survive_kill_9() {
    let dir = scratch();
    let path = dir.path().join("killed.sqlite");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "store::kill_9_child_writer",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(KILL_CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the writer process");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(id) = line.strip_prefix(COMMITTED_PREFIX) {
                let id: i64 = id.trim().parse().expect("an id");
                if tx.send(id).is_err() {
                    break;
                }
            }
        }
    });
    // Let it write for a while, then kill it in the middle of whatever it is doing.
    let mut reported = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while reported.len() < 20_000 && Instant::now() < deadline {
        if let Ok(id) = rx.recv_timeout(Duration::from_millis(100)) {
            reported.insert(id);
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the writer process ended by itself: {status}");
        }
    }
    child.kill().expect("kill -9 the writer");
    let status = child.wait().expect("reap the writer");
    assert!(!status.success());
    reader.join().expect("reader thread");
    reported.extend(rx.try_iter());
    assert!(
        reported.len() >= 1000,
        "the writer reported only {} ids",
        reported.len()
    );

    integrity_check(&path).expect("the killed store is intact");
    let (store, _) = open(&StoreConfig::new(&path));
    let stored: BTreeSet<i64> = all(&store, &DetectionQuery::default())
        .iter()
        .map(|d| d.id)
        .collect();
    let lost: Vec<&i64> = reported.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} reported ids lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    eprintln!(
        "kill -9: {} ids reported before the kill, {} stored after reopening, none lost",
        reported.len(),
        stored.len()
    );
    store.integrity_check().expect("intact after reopening");
}

#[test]
fn a_checkpointer_copies_the_log_into_the_database_file_while_the_store_runs() {
    let dir = scratch();
    let cfg = config(dir.path());
    let (store, _) = open(&cfg);
    let db_len = || std::fs::metadata(&cfg.path).expect("database file").len();
    let before = db_len();
    for i in 0..2_000 {
        assert!(store.writer().submit(detection(i, "bpsk", 0)));
    }
    store.flush().expect("flush");
    // 2,000 rows are far below SQLite's automatic checkpoint (1,000 log pages), and the writer
    // turns that off: only the store's own checkpointer can grow the database file meanwhile.
    wait_until(
        Duration::from_secs(10),
        &format!(
            "the database file stayed at {before} bytes for 10 s after 2,000 commits: nothing \
             checkpointed the write-ahead log"
        ),
        || db_len() > before,
    );
    assert_eq!(all(&store, &DetectionQuery::default()).len(), 2_000);
    store.close().expect("close");
}
