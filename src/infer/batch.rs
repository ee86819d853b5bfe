//! [`Batcher`]: collects windows for [`crate::infer::Model::run`] until `max_batch` windows are
//! in or the oldest has waited `max_wait`, whichever comes first. Each window carries a tag (its
//! stream position, say) so results can be matched back. Time is passed in, so the caller's
//! clock rules and tests need no sleeping.
//!
//! ```
//! # use std::time::{Duration, Instant};
//! # use specwatch::infer::Batcher;
//! # use specwatch::iq::C32;
//! let mut b: Batcher<u64> = Batcher::new(4, Duration::from_millis(5), 128).expect("valid");
//! let t0 = Instant::now();
//! b.push(&[C32::new(0.0, 0.0); 128], 0, t0).expect("fits");
//! assert!(!b.is_ready(t0));
//! assert!(b.is_ready(t0 + Duration::from_millis(5)));
//! // model.run(b.windows(), b.len())?; … match results to b.tags(); then:
//! b.clear();
//! ```

use std::time::{Duration, Instant};

use super::{InferError, Result};
use crate::iq::C32;

/// Collects windows into batches (see the module doc).
#[derive(Debug, Clone)]
pub struct Batcher<T = ()> {
    max_batch: usize,
    max_wait: Duration,
    window_size: usize,
    windows: Vec<C32>,
    tags: Vec<T>,
    oldest: Option<Instant>,
}

impl<T> Batcher<T> {
    /// A batcher of up to `max_batch` windows of `window_size` samples (`channels ×
    /// window_len`), ready at the latest `max_wait` after its first window arrived.
    pub fn new(max_batch: usize, max_wait: Duration, window_size: usize) -> Result<Self> {
        if max_batch == 0 {
            return Err(InferError::Batcher(
                "'max_batch' is 0; expected at least 1".into(),
            ));
        }
        if window_size == 0 {
            return Err(InferError::Batcher(
                "'window_size' is 0; expected at least 1 sample".into(),
            ));
        }
        Ok(Batcher {
            max_batch,
            max_wait,
            window_size,
            windows: Vec::with_capacity(max_batch * window_size),
            tags: Vec::with_capacity(max_batch),
            oldest: None,
        })
    }

    /// Adds a window that arrived at `now`; returns whether the batch is now full. A full batch
    /// takes no more windows: run it and [`Batcher::clear`] first.
    pub fn push(&mut self, window: &[C32], tag: T, now: Instant) -> Result<bool> {
        if window.len() != self.window_size {
            return Err(InferError::Batcher(format!(
                "window of {} samples; this batcher takes {}",
                window.len(),
                self.window_size
            )));
        }
        if self.is_full() {
            return Err(InferError::Batcher(format!(
                "batch already holds 'max_batch' = {} windows; run and clear it first",
                self.max_batch
            )));
        }
        self.windows.extend_from_slice(window);
        self.tags.push(tag);
        self.oldest.get_or_insert(now);
        Ok(self.is_full())
    }

    /// Whether the batch should run now: full, or not empty and its oldest window has waited
    /// `max_wait`.
    pub fn is_ready(&self, now: Instant) -> bool {
        self.is_full() || self.deadline().is_some_and(|d| now >= d)
    }

    /// When the batch must run at the latest (`None` while empty).
    pub fn deadline(&self) -> Option<Instant> {
        self.oldest.map(|t| t + self.max_wait)
    }

    /// Whether `max_batch` windows are in.
    pub fn is_full(&self) -> bool {
        self.tags.len() >= self.max_batch
    }

    /// Windows in the batch.
    pub fn len(&self) -> usize {
        self.tags.len()
    }

    /// Whether no window is in.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }

    /// The windows, one after another (`len() × window_size` samples).
    pub fn windows(&self) -> &[C32] {
        &self.windows
    }

    /// The tags, in window order.
    pub fn tags(&self) -> &[T] {
        &self.tags
    }

    /// Empties the batch (keeping its buffers).
    pub fn clear(&mut self) {
        self.windows.clear();
        self.tags.clear();
        self.oldest = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(v: f32) -> Vec<C32> {
        vec![C32::new(v, -v); 4]
    }

    #[test]
    fn ready_when_full() {
        let mut b = Batcher::new(3, Duration::from_secs(60), 4).expect("valid");
        let t = Instant::now();
        assert!(!b.push(&w(1.0), 1u32, t).expect("fits"));
        assert!(!b.push(&w(2.0), 2, t).expect("fits"));
        assert!(!b.is_ready(t));
        assert!(b.push(&w(3.0), 3, t).expect("fits"));
        assert!(b.is_ready(t));
        assert_eq!(b.tags(), [1, 2, 3]);
        assert_eq!(b.windows().len(), 12);
        assert_eq!(b.windows()[4], C32::new(2.0, -2.0));
        let err = b.push(&w(4.0), 4, t).expect_err("full").to_string();
        assert!(err.contains("'max_batch' = 3"), "{err}");
        b.clear();
        assert!(b.is_empty() && b.deadline().is_none() && !b.is_ready(t));
    }

    #[test]
    fn ready_when_oldest_waited_long_enough() {
        let mut b = Batcher::new(8, Duration::from_millis(10), 4).expect("valid");
        let t0 = Instant::now();
        assert!(
            !b.is_ready(t0 + Duration::from_secs(1)),
            "empty never ready"
        );
        b.push(&w(1.0), (), t0).expect("fits");
        b.push(&w(2.0), (), t0 + Duration::from_millis(8))
            .expect("fits");
        assert_eq!(b.deadline(), Some(t0 + Duration::from_millis(10)));
        assert!(!b.is_ready(t0 + Duration::from_millis(9)));
        assert!(b.is_ready(t0 + Duration::from_millis(10)));
    }

    #[test]
    fn refuses_bad_sizes() {
        assert!(Batcher::<()>::new(0, Duration::ZERO, 4).is_err());
        assert!(Batcher::<()>::new(1, Duration::ZERO, 0).is_err());
        let mut b = Batcher::new(2, Duration::ZERO, 4).expect("valid");
        let err = b
            .push(&[C32::new(0.0, 0.0); 3], (), Instant::now())
            .expect_err("wrong size")
            .to_string();
        assert!(
            err.contains("window of 3 samples; this batcher takes 4"),
            "{err}"
        );
    }
}
