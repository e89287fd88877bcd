//! The values of the unit's `.env` files, to mask in every line a command
//! shows (`status`, `logs`, `alert`): read as root from files the service
//! user writes, so through `untrusted` (no link, no FIFO, bounded), and
//! turned into one [`Masker`] per run.

use jarvis_model::masking::Masker;

use jarvis_model::paths::Paths;
use jarvis_model::unit::Unit;

/// Every value of the unit's `.env` files; None when one exists but cannot
/// be read: its values could not be masked, so no line may be shown.
pub fn values(paths: &Paths, unit: &Unit) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for env in unit.environment_files() {
        match jarvis_model::untrusted::read(&paths.host(&env.path), None, crate::envcheck::ENV_MAX) {
            Ok(bytes) => {
                let parsed = jarvis_model::envfile::parse(&bytes);
                // Short values too: masking takes them as whole words.
                out.extend(parsed.vars.into_iter().map(|v| v.value).filter(|v| !v.is_empty()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => return None,
        }
    }
    Some(out)
}

/// The masker of the unit's values, built once; None as for [`values`].
pub fn masker(paths: &Paths, unit: &Unit) -> Option<Masker> {
    values(paths, unit).map(|v| Masker::new(&v))
}

/// The masker of the values of several units (every instance on the
/// host); None as for [`values`].
pub fn masker_of(paths: &Paths, units: &[Unit]) -> Option<Masker> {
    let mut all = Vec::new();
    for u in units {
        all.extend(values(paths, u)?);
    }
    Some(Masker::new(&all))
}
