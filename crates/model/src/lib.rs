//! The shared model of jarvis-supervisor, used by both binaries (`jarvisctl`
//! and `jarvis-engine`): where things are (`paths`), what went wrong
//! (`error`), what the unit says (`unit`, `unitkeys`, `service`), what the
//! engine records (`state`), which supervised program (`instance`), the
//! bot's `.env` files (`envfile`) and their secrets kept out of output
//! (`masking`, `defuse`), reads of files the service user can write
//! (`untrusted`), deploy manifests (`manifest`) and time spans (`timespan`).
#![forbid(unsafe_code)]

pub mod defuse;
pub mod envfile;
pub mod error;
pub mod filesystem;
pub mod instance;
pub mod manifest;
pub mod masking;
pub mod paths;
pub mod service;
pub mod state;
pub mod timespan;
pub mod unit;
pub mod unitkeys;
pub mod untrusted;
