//! Capture files: what the daemon replays and the trainer can read.
//!
//! [`Capture::open`] dispatches on the file name:
//! - `*.sigmf-meta` / `*.sigmf-data`: a SigMF recording (see [`super::sigmf`]);
//! - anything else: a `.npy` array of dtype `<c8` (complex64) or `<c16` (complex128, narrowed
//!   to complex64 on reading), shape `(channels, samples)` or `(samples,)` (one channel), in C
//!   or Fortran order. A Fortran-ordered `(C, N)` array is stored sample-interleaved (sample `i`
//!   of channel `c` at element `i·C + c`), a C-ordered one channel after channel. Its optional
//!   sidecar `<name>.json` ([`super::sidecar`]) is read and checked against the array.
//!
//! Samples are read by index with [`Capture::read`] / [`Capture::read_into`], seeking in the
//! file, so a capture is never loaded whole. A non-finite sample (NaN or infinity) is an error
//! that names the file, the channel and the sample index; it is never passed on.

use std::path::{Path, PathBuf};

use super::C32;
use super::npy::{NpyError, NpyReader};
use super::sidecar::{Sidecar, SidecarError, sidecar_path};
use super::sigmf::{SigmfError, SigmfReader};

/// Errors from opening or reading a capture; every one names the file.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(transparent)]
    Npy(#[from] NpyError),
    #[error(transparent)]
    Sidecar(#[from] SidecarError),
    #[error(transparent)]
    Sigmf(#[from] SigmfError),
    #[error("{path}: shape is {found:?}; a capture must be (channels, samples) or (samples,)")]
    Shape { path: PathBuf, found: Vec<usize> },
    #[error(
        "{path}: the capture holds no samples (shape {shape:?}); expected at least one sample per channel"
    )]
    Empty { path: PathBuf, shape: Vec<usize> },
    #[error(
        "{path}: channel {channel}, sample {index} is not a finite number (NaN or infinity); capture samples must be finite"
    )]
    NonFinite {
        path: PathBuf,
        channel: usize,
        index: u64,
    },
    #[error("{path}: {problem}")]
    Read { path: PathBuf, problem: String },
}

/// The format a capture was opened from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureFormat {
    Npy,
    Sigmf,
}

enum Source {
    Npy {
        reader: NpyReader<C32>,
        /// Sample-interleaved storage (a Fortran-ordered 2-D array).
        interleaved: bool,
    },
    Sigmf(Box<SigmfReader>),
}

/// An opened capture: its shape, what is known about it, and a reader for its samples.
pub struct Capture {
    path: PathBuf,
    channels: usize,
    len: u64,
    sidecar: Option<Sidecar>,
    source: Source,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("path", &self.path)
            .field("format", &self.format())
            .field("channels", &self.channels)
            .field("len", &self.len)
            .finish()
    }
}

fn is_sigmf(path: &Path) -> bool {
    path.file_name()
        .map(|n| n.to_string_lossy())
        .is_some_and(|n| n.ends_with(".sigmf-meta") || n.ends_with(".sigmf-data"))
}

impl Capture {
    /// Opens a `.npy` capture (with its sidecar, when there is one) or a SigMF recording.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        if is_sigmf(path) {
            let reader = SigmfReader::open(path)?;
            if reader.is_empty() {
                return Err(CaptureError::Empty {
                    path: reader.data_path().to_path_buf(),
                    shape: vec![0, reader.channels()],
                });
            }
            return Ok(Self {
                path: reader.meta_path().to_path_buf(),
                channels: reader.channels(),
                len: reader.len(),
                sidecar: None,
                source: Source::Sigmf(Box::new(reader)),
            });
        }
        let reader = NpyReader::<C32>::open(path)?;
        let shape = reader.header.shape.clone();
        let (channels, len, interleaved) = match shape.as_slice() {
            [n] => (1, *n, false),
            [c, n] => (*c, *n, reader.header.fortran_order),
            _ => {
                return Err(CaptureError::Shape {
                    path: path.to_path_buf(),
                    found: shape,
                });
            }
        };
        if channels == 0 || len == 0 {
            return Err(CaptureError::Empty {
                path: path.to_path_buf(),
                shape,
            });
        }
        let side = sidecar_path(path);
        let sidecar = if side.is_file() {
            let s = Sidecar::load(&side)?;
            s.check_capture(&side, channels, len as u64)?;
            Some(s)
        } else {
            None
        };
        Ok(Self {
            path: path.to_path_buf(),
            channels,
            len: len as u64,
            sidecar,
            source: Source::Npy {
                reader,
                interleaved: interleaved && channels > 1,
            },
        })
    }

    /// The file the capture was opened from (for SigMF, the `.sigmf-meta` file).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn format(&self) -> CaptureFormat {
        match self.source {
            Source::Npy { .. } => CaptureFormat::Npy,
            Source::Sigmf(_) => CaptureFormat::Sigmf,
        }
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Samples per channel.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Always false: empty captures are refused at open.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The sidecar of a `.npy` capture, when it has one.
    pub fn sidecar(&self) -> Option<&Sidecar> {
        self.sidecar.as_ref()
    }

    /// The SigMF metadata of a SigMF capture.
    pub fn sigmf(&self) -> Option<&super::sigmf::SigmfMeta> {
        match &self.source {
            Source::Sigmf(r) => Some(r.meta()),
            Source::Npy { .. } => None,
        }
    }

    /// Sample rate in Hz, from the sidecar or the SigMF metadata.
    pub fn sample_rate_hz(&self) -> Option<f64> {
        match &self.source {
            Source::Sigmf(r) => r.meta().sample_rate_hz,
            Source::Npy { .. } => self.sidecar.as_ref().and_then(|s| s.sample_rate_hz),
        }
    }

    /// Center frequency in Hz, from the sidecar or the first SigMF capture segment.
    pub fn center_freq_hz(&self) -> Option<f64> {
        match &self.source {
            Source::Sigmf(r) => r.meta().center_freq_hz(),
            Source::Npy { .. } => self.sidecar.as_ref().and_then(|s| s.center_freq_hz),
        }
    }

    /// Time of the first sample (RFC 3339), from the sidecar or the first SigMF capture segment.
    pub fn start_time(&self) -> Option<&str> {
        match &self.source {
            Source::Sigmf(r) => r.meta().datetime(),
            Source::Npy { .. } => self.sidecar.as_ref().and_then(|s| s.start_time.as_deref()),
        }
    }

    /// Reads samples `start..start + count` of every channel: one vector per channel.
    pub fn read(&mut self, start: u64, count: usize) -> Result<Vec<Vec<C32>>, CaptureError> {
        let mut out = vec![Vec::with_capacity(count); self.channels];
        self.read_into(start, count, &mut out)?;
        Ok(out)
    }

    /// Reads samples `start..start + count` of every channel into `out` (one vector per
    /// channel, cleared first), reusing its allocations.
    pub fn read_into(
        &mut self,
        start: u64,
        count: usize,
        out: &mut [Vec<C32>],
    ) -> Result<(), CaptureError> {
        let end = start.saturating_add(count as u64);
        if out.len() != self.channels || end > self.len {
            return Err(CaptureError::Read {
                path: self.path.clone(),
                problem: format!(
                    "a read of samples {start}..{end} on {} channels does not fit the capture ({} channels × {} samples)",
                    out.len(),
                    self.channels,
                    self.len
                ),
            });
        }
        for v in out.iter_mut() {
            v.clear();
        }
        let (channels, len) = (self.channels, self.len as usize);
        match &mut self.source {
            Source::Sigmf(r) => r.read_into(start, count, out)?,
            Source::Npy {
                reader,
                interleaved: false,
            } => {
                for (c, v) in out.iter_mut().enumerate() {
                    reader.read_into(c * len + start as usize, count, v)?;
                }
            }
            Source::Npy {
                reader,
                interleaved: true,
            } => {
                let mut flat = Vec::with_capacity(count * channels);
                reader.read_into(start as usize * channels, count * channels, &mut flat)?;
                for frame in flat.chunks_exact(channels) {
                    for (v, s) in out.iter_mut().zip(frame) {
                        v.push(*s);
                    }
                }
            }
        }
        for (c, v) in out.iter().enumerate() {
            if let Some(i) = v
                .iter()
                .position(|s| !(s.re.is_finite() && s.im.is_finite()))
            {
                return Err(CaptureError::NonFinite {
                    path: self.path.clone(),
                    channel: c,
                    index: start + i as u64,
                });
            }
        }
        Ok(())
    }

    /// Reads every sample (only for captures known to be small).
    pub fn read_all(&mut self) -> Result<Vec<Vec<C32>>, CaptureError> {
        let len = usize::try_from(self.len).map_err(|_| CaptureError::Read {
            path: self.path.clone(),
            problem: format!("{} samples do not fit in memory", self.len),
        })?;
        self.read(0, len)
    }
}
