//! Device selection: which candle device runs a model.
//!
//! CPU is the default and the only device the default build can use. The `cuda` and `metal`
//! cargo features pass through to candle; asking for a GPU in a build without its feature is a
//! clear [`ModelError::Invalid`], never a panic.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

use crate::error::ModelError;

/// A device request as written in config or on the command line (`cpu`, `cuda`, `cuda:1`, `metal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// Plain CPU (candle's gemm kernels, rayon threads).
    #[default]
    Cpu,
    /// NVIDIA GPU with the given ordinal (needs the `cuda` feature).
    Cuda(usize),
    /// Apple GPU with the given ordinal (needs the `metal` feature).
    Metal(usize),
}

impl DeviceSpec {
    /// Creates the candle device.
    ///
    /// # Errors
    /// [`ModelError::Invalid`] when the build lacks the feature, or the device cannot be opened.
    pub fn to_device(self) -> Result<Device, ModelError> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(ordinal) => {
                if cfg!(feature = "cuda") {
                    Device::new_cuda(ordinal).map_err(|e| {
                        ModelError::Invalid(format!("cannot open cuda:{ordinal}: {e}"))
                    })
                } else {
                    Err(ModelError::Invalid(
                        "this build has no CUDA support; rebuild with `--features cuda`".into(),
                    ))
                }
            }
            Self::Metal(ordinal) => {
                if cfg!(feature = "metal") {
                    Device::new_metal(ordinal).map_err(|e| {
                        ModelError::Invalid(format!("cannot open metal:{ordinal}: {e}"))
                    })
                } else {
                    Err(ModelError::Invalid(
                        "this build has no Metal support; rebuild with `--features metal`".into(),
                    ))
                }
            }
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let (kind, ordinal) = match lower.split_once(':') {
            Some((kind, n)) => {
                let n = n
                    .parse::<usize>()
                    .map_err(|_| ModelError::Invalid(format!("bad device ordinal in {s:?}")))?;
                (kind.to_owned(), n)
            }
            None => (lower, 0),
        };
        match kind.as_str() {
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(ordinal)),
            "metal" | "mps" => Ok(Self::Metal(ordinal)),
            _ => Err(ModelError::Invalid(format!(
                "unknown device {s:?}: expected cpu, cuda[:N] or metal[:N]"
            ))),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
            Self::Metal(n) => write!(f, "metal:{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("CUDA:1".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(1));
        assert_eq!("metal".parse::<DeviceSpec>().unwrap(), DeviceSpec::Metal(0));
        assert!("tpu".parse::<DeviceSpec>().is_err());
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
    }

    #[test]
    fn gpu_without_feature_is_an_error_not_a_panic() {
        if !cfg!(feature = "cuda") {
            assert!(DeviceSpec::Cuda(0).to_device().is_err());
        }
        assert!(DeviceSpec::Cpu.to_device().is_ok());
    }
}
