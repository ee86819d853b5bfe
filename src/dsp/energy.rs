//! Energy detector for the daemon's gate: per-window energy in dB against a tracked noise floor.
//!
//! # Behaviour
//! * Energy of a window: mean power `Σ|x|²/n` over all its samples, in dB
//!   ([`crate::dsp::psd::power_db`]).
//! * Warm-up: the first `warmup_windows` windows all pass (`warming_up = true`, fail-open so
//!   nothing is missed while the floor is unknown). At the end of warm-up the floor is set to the
//!   `warmup_quantile` (default 0.25) of the warm-up energies — a low quantile, so a minority of
//!   occupied windows during warm-up does not lift it.
//! * After warm-up a window passes when `energy_db > floor_db + threshold_db`. Windows that do
//!   not pass are judged noise and update the floor by an exponential moving average of linear
//!   power, `floor ← (1 − α)·floor + α·energy`; windows that pass leave it unchanged, so a signal
//!   cannot drag the floor up.
//! * Recovery: if `stuck_windows` consecutive windows pass, the noise itself is assumed to have
//!   risen; the floor is reset to the lowest energy seen during that run.

use serde::{Deserialize, Serialize};

use crate::dsp::DspError;
use crate::dsp::normalize::mean_power;
use crate::dsp::psd::power_db;
use crate::iq::C32;

/// Energy-detector settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EnergyDetectorConfig {
    /// Margin above the noise floor for a window to pass, dB.
    pub threshold_db: f32,
    /// Windows observed before the floor is first set (all pass meanwhile).
    pub warmup_windows: usize,
    /// Quantile (0..1) of the warm-up energies taken as the first floor.
    pub warmup_quantile: f32,
    /// EMA weight α of each noise window in the floor (0 < α ≤ 1).
    pub floor_alpha: f32,
    /// Consecutive passing windows after which the floor is re-estimated.
    pub stuck_windows: usize,
}

impl Default for EnergyDetectorConfig {
    fn default() -> Self {
        Self {
            threshold_db: 6.0,
            warmup_windows: 32,
            warmup_quantile: 0.25,
            floor_alpha: 0.02,
            stuck_windows: 2000,
        }
    }
}

/// The gate's verdict on one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GateDecision {
    /// Whether the window goes on to inference.
    pub pass: bool,
    /// The window's mean power, dB.
    pub energy_db: f32,
    /// The floor it was compared with, dB (during warm-up: the floor so far, or the window's own
    /// energy for the first window).
    pub floor_db: f32,
    /// Whether the detector was still warming up.
    pub warming_up: bool,
}

/// An energy detector with a tracked noise floor (behaviour in the module doc).
#[derive(Debug, Clone)]
pub struct EnergyDetector {
    cfg: EnergyDetectorConfig,
    warmup: Vec<f32>,
    /// Linear noise-floor power once warm.
    floor: Option<f64>,
    run: usize,
    run_min: f64,
}

impl EnergyDetector {
    /// A detector with `cfg`, checked.
    pub fn new(cfg: EnergyDetectorConfig) -> Result<Self, DspError> {
        if !(cfg.threshold_db.is_finite() && cfg.threshold_db >= 0.0) {
            return Err(DspError::param(
                "threshold_db",
                cfg.threshold_db,
                "a finite margin ≥ 0 dB",
            ));
        }
        if !(cfg.floor_alpha > 0.0 && cfg.floor_alpha <= 1.0) {
            return Err(DspError::param(
                "floor_alpha",
                cfg.floor_alpha,
                "a weight in (0, 1]",
            ));
        }
        if !(0.0..=1.0).contains(&cfg.warmup_quantile) {
            return Err(DspError::param(
                "warmup_quantile",
                cfg.warmup_quantile,
                "a quantile in [0, 1]",
            ));
        }
        if cfg.warmup_windows == 0 {
            return Err(DspError::param("warmup_windows", 0, "at least 1"));
        }
        if cfg.stuck_windows == 0 {
            return Err(DspError::param("stuck_windows", 0, "at least 1"));
        }
        Ok(Self {
            cfg,
            warmup: Vec::with_capacity(cfg.warmup_windows),
            floor: None,
            run: 0,
            run_min: f64::INFINITY,
        })
    }

    /// The settings.
    pub fn config(&self) -> &EnergyDetectorConfig {
        &self.cfg
    }

    /// The current floor in dB, once warm.
    pub fn floor_db(&self) -> Option<f32> {
        self.floor.map(|f| power_db(f as f32))
    }

    /// Judges one window (any number of channels, all samples count).
    pub fn update(&mut self, window: &[C32]) -> GateDecision {
        self.update_power(mean_power(window))
    }

    /// Judges a window whose mean power (linear) is already known.
    pub fn update_power(&mut self, power: f64) -> GateDecision {
        let power = if power.is_finite() {
            power.max(0.0)
        } else {
            0.0
        };
        let energy_db = power_db(power as f32);
        let Some(floor) = self.floor else {
            self.warmup.push(energy_db);
            let provisional = self.warmup.iter().copied().fold(f32::INFINITY, f32::min);
            if self.warmup.len() >= self.cfg.warmup_windows {
                let mut sorted = self.warmup.clone();
                sorted.sort_by(f32::total_cmp);
                let i = ((sorted.len() - 1) as f32 * self.cfg.warmup_quantile).round() as usize;
                self.floor = Some(10f64.powf(f64::from(sorted[i]) / 10.0));
                self.warmup.clear();
            }
            return GateDecision {
                pass: true,
                energy_db,
                floor_db: provisional,
                warming_up: true,
            };
        };
        let floor_db = power_db(floor as f32);
        let pass = energy_db > floor_db + self.cfg.threshold_db;
        if pass {
            self.run += 1;
            self.run_min = self.run_min.min(power);
            if self.run >= self.cfg.stuck_windows {
                self.floor = Some(self.run_min.max(f64::from(f32::MIN_POSITIVE)));
                self.run = 0;
                self.run_min = f64::INFINITY;
            }
        } else {
            self.run = 0;
            self.run_min = f64::INFINITY;
            let a = f64::from(self.cfg.floor_alpha);
            self.floor = Some((1.0 - a) * floor + a * power);
        }
        GateDecision {
            pass,
            energy_db,
            floor_db,
            warming_up: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_config_is_named() {
        let e = EnergyDetector::new(EnergyDetectorConfig {
            floor_alpha: 0.0,
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("'floor_alpha'"), "{e}");
    }

    #[test]
    fn floor_recovers_when_noise_rises() {
        let cfg = EnergyDetectorConfig {
            warmup_windows: 4,
            stuck_windows: 10,
            ..Default::default()
        };
        let mut d = EnergyDetector::new(cfg).expect("valid");
        for _ in 0..4 {
            d.update_power(1.0);
        }
        assert_eq!(d.floor_db(), Some(0.0));
        for _ in 0..10 {
            assert!(d.update_power(100.0).pass);
        }
        assert!(
            !d.update_power(100.0).pass,
            "floor should have been reset to 20 dB"
        );
        assert!((d.floor_db().expect("warm") - 20.0).abs() < 1e-3);
    }
}
