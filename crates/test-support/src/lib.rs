//! The booted-container harness of the end-to-end tests (`tests/e2e/`),
//! shared with `cargo xtask try` so that the demo boots exactly what the
//! tests boot: Debian roots made by debootstrap (`roots`), booted with
//! systemd-nspawn and entered through their init (`container`); and hosts
//! reached over ssh in a network namespace of the caller's own (`remote`),
//! shared with `cargo xtask bench --only deploy`.

pub mod cgroup;
pub mod container;
pub mod remote;
pub mod roots;
