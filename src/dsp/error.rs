//! The one error type of the DSP module: every refusal names the parameter at fault and what
//! was expected of it.

/// Why a DSP function refused its input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DspError {
    /// A parameter has a value the function cannot work with.
    #[error("'{name}' is {value}; expected {expected}")]
    Param {
        /// The parameter's name, as in the function signature or config.
        name: &'static str,
        /// The value that was given, formatted.
        value: String,
        /// What would have been accepted.
        expected: String,
    },
    /// A channel-major buffer whose length is not a whole number of channels × samples.
    #[error(
        "buffer '{name}' has {len} samples, which does not divide into 'channels' = {channels} \
         equal channels{detail}"
    )]
    Channels {
        /// The buffer's parameter name.
        name: &'static str,
        /// The buffer's length in samples.
        len: usize,
        /// The channel count it was supposed to hold.
        channels: usize,
        /// Extra expectation (e.g. the per-channel length required), starting with "; ".
        detail: String,
    },
}

impl DspError {
    /// Shorthand for [`DspError::Param`].
    pub fn param(name: &'static str, value: impl ToString, expected: impl Into<String>) -> Self {
        DspError::Param {
            name,
            value: value.to_string(),
            expected: expected.into(),
        }
    }
}

/// Checks that `value` is at least 1.
pub(crate) fn nonzero(name: &'static str, value: usize) -> Result<(), DspError> {
    if value == 0 {
        Err(DspError::param(name, 0, "at least 1"))
    } else {
        Ok(())
    }
}

/// Checks that a channel-major buffer of `len` samples splits into `channels` channels and
/// returns the samples per channel.
pub(crate) fn per_channel(
    name: &'static str,
    len: usize,
    channels: usize,
) -> Result<usize, DspError> {
    nonzero("channels", channels)?;
    if !len.is_multiple_of(channels) {
        return Err(DspError::Channels {
            name,
            len,
            channels,
            detail: String::new(),
        });
    }
    Ok(len / channels)
}

/// Checks that a channel-major buffer holds exactly `channels × per_channel` samples.
pub(crate) fn exact_shape(
    name: &'static str,
    len: usize,
    channels: usize,
    per_channel: usize,
) -> Result<(), DspError> {
    nonzero("channels", channels)?;
    if len != channels * per_channel {
        return Err(DspError::Channels {
            name,
            len,
            channels,
            detail: format!(
                "; expected {channels} × {per_channel} = {}",
                channels * per_channel
            ),
        });
    }
    Ok(())
}
