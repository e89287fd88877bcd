//! The parts of `jarvisctl` that tests and fuzzing use directly.
#![forbid(unsafe_code)]

pub mod defuse;
pub mod envfile;
pub mod masking;
pub mod unitkeys;
