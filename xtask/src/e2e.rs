//! The booted-container harness of the end-to-end tests, shared with
//! `cargo xtask try` so that the demo boots exactly what the tests boot.

#[allow(dead_code)] // the demo uses only part of the harness
#[path = "../../tests/e2e/roots.rs"]
pub mod roots;

#[allow(dead_code)]
#[path = "../../tests/e2e/container.rs"]
pub mod container;
