//! Which unit settings `jarvisctl run` honours without systemd, and which
//! it can only report. One table, so that a test can check that every
//! setting of the shipped unit is in one of the two lists.

/// Settings the fallback engine gives the program as systemd would
/// (`Section`, `Key`).
pub const HONOURED: &[(&str, &str)] = &[
    ("Unit", "Description"),
    ("Unit", "StartLimitIntervalSec"),
    ("Unit", "StartLimitBurst"),
    // As the shipped unit means it: when it gives up, `jarvisctl alert`.
    ("Unit", "OnFailure"),
    ("Service", "Type"),
    ("Service", "NotifyAccess"),
    ("Service", "User"),
    ("Service", "Group"),
    ("Service", "WorkingDirectory"),
    ("Service", "Environment"),
    ("Service", "EnvironmentFile"),
    ("Service", "ExecCondition"),
    ("Service", "ExecStartPre"),
    ("Service", "ExecStart"),
    ("Service", "Restart"),
    ("Service", "RestartSec"),
    ("Service", "TimeoutStartSec"),
    ("Service", "TimeoutStopSec"),
    ("Service", "TimeoutAbortSec"),
    ("Service", "TimeoutSec"),
    ("Service", "WatchdogSec"),
    ("Service", "MemoryMax"),
    ("Service", "RuntimeDirectory"),
    ("Service", "RuntimeDirectoryPreserve"),
    ("Service", "UMask"),
    ("Service", "NoNewPrivileges"),
];

/// Settings of the shipped unit that need systemd itself (namespaces,
/// seccomp, cgroup CPU control, the journal, dependency ordering). They
/// are named on one line at start, never dropped silently. Any other
/// setting outside `HONOURED` is reported the same way.
pub const REPORTED: &[(&str, &str)] = &[
    ("Unit", "Documentation"),
    ("Unit", "Wants"),
    ("Unit", "After"),
    // The group (jarvis-supervisor.target): the init script starts and
    // stops every instance instead.
    ("Unit", "PartOf"),
    ("Service", "CPUQuota"),
    // An instance's own /tmp (the template's).
    ("Service", "PrivateTmp"),
    ("Service", "SyslogIdentifier"),
    ("Service", "ProtectSystem"),
    ("Service", "ProtectHome"),
    ("Service", "ReadWritePaths"),
    ("Service", "CapabilityBoundingSet"),
    ("Service", "AmbientCapabilities"),
    ("Service", "PrivateDevices"),
    ("Service", "PrivateUsers"),
    ("Service", "PrivateMounts"),
    ("Service", "ProtectKernelTunables"),
    ("Service", "ProtectKernelModules"),
    ("Service", "ProtectKernelLogs"),
    ("Service", "ProtectControlGroups"),
    ("Service", "ProtectClock"),
    ("Service", "ProtectHostname"),
    ("Service", "ProtectProc"),
    ("Service", "RestrictAddressFamilies"),
    ("Service", "RestrictNamespaces"),
    ("Service", "RestrictRealtime"),
    ("Service", "RestrictSUIDSGID"),
    ("Service", "LockPersonality"),
    ("Service", "RemoveIPC"),
    ("Service", "SystemCallArchitectures"),
    ("Service", "SystemCallFilter"),
    ("Service", "SystemCallErrorNumber"),
    ("Install", "WantedBy"),
];

/// Whether `jarvisctl run` honours `[section] key`.
pub fn honoured(section: &str, key: &str) -> bool {
    HONOURED.iter().any(|&(s, k)| s == section && k == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_the_shipped_unit_and_template_is_honoured_or_reported() {
        for text in [
            include_str!("../../../systemd/jarvis-supervisor.service"),
            include_str!("../../../systemd/group/jarvis-supervisor@.service"),
        ] {
            every_key_is_known(text);
        }
    }

    fn every_key_is_known(text: &str) {
        let mut section = "";
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line.trim_matches(['[', ']']);
                continue;
            }
            let Some((key, _)) = line.split_once('=') else {
                continue;
            };
            if line.starts_with('#') {
                continue;
            }
            let key = key.trim();
            assert!(
                honoured(section, key) || REPORTED.contains(&(section, key)),
                "[{section}] {key} is neither honoured nor reported by jarvisctl run"
            );
        }
    }

    /// Under systemd, `stop` ends every process the bot started (a
    /// `setsid` one too) only with KillMode=control-group, the default:
    /// no shipped unit may weaken it (issue 24).
    #[test]
    fn every_shipped_unit_leaves_kill_mode_at_control_group() {
        let units = [
            (
                "jarvis-supervisor.service",
                include_str!("../../../systemd/jarvis-supervisor.service"),
            ),
            (
                "jarvis-supervisor@.service",
                include_str!("../../../systemd/group/jarvis-supervisor@.service"),
            ),
            (
                "jarvis-supervisor-health.service",
                include_str!("../../../systemd/jarvis-supervisor-health.service"),
            ),
            (
                "jarvis-supervisor-alert.service",
                include_str!("../../../systemd/jarvis-supervisor-alert.service"),
            ),
            (
                "jarvis-supervisor-alert@.service",
                include_str!("../../../systemd/group/jarvis-supervisor-alert@.service"),
            ),
            (
                "jarvis-supervisor-restart.service",
                include_str!("../../../systemd/jarvis-supervisor-restart.service"),
            ),
        ];
        for (name, text) in units {
            assert!(text.contains("[Service]"), "{name} is not a service unit");
            for line in text.lines().map(str::trim).filter(|l| !l.starts_with(['#', ';'])) {
                let Some((key, value)) = line.split_once('=') else {
                    continue;
                };
                let (key, value) = (key.trim(), value.trim());
                assert!(
                    !(key == "KillMode" && value != "control-group"),
                    "{name}: {line}: processes the bot started would outlive stop"
                );
                assert!(
                    !(key == "SendSIGKILL" && value != "yes"),
                    "{name}: {line}: a process that ignores SIGTERM would outlive stop"
                );
            }
        }
    }

    #[test]
    fn no_key_is_in_both_lists() {
        for entry in REPORTED {
            assert!(!HONOURED.contains(entry), "{entry:?}");
        }
    }
}
