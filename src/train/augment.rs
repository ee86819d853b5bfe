//! Augmentations of raw IQ windows, applied before the shared `dsp` preprocessing.
