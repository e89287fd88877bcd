# %post ($1: 1 = initial installation, 2+ = upgrade).
# %systemd_post written out: cargo-generate-rpm does not expand macros.
jarvisctl setup || exit 1
# %tmpfiles_create, once the user exists.
if command -v systemd-tmpfiles >/dev/null 2>&1; then
    systemd-tmpfiles --create jarvis-supervisor.conf >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ]; then
    # Initial installation: %systemd_post. The package's preset file
    # (50-jarvis-supervisor.preset) enables both; an administrator's preset
    # in /etc/systemd/system-preset/ may say otherwise.
    systemctl --no-reload preset jarvis-supervisor.service jarvis-supervisor-health.timer >/dev/null 2>&1 || :
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload || :
        systemctl start jarvis-supervisor-health.timer || :
        # check is bounded (90 s, docs/commands.md); the timeout is a second guard:
        # the rpm transaction waits for it.
        if timeout --kill-after=10 120 jarvisctl check; then
            systemctl start jarvis-supervisor.service \
                || echo "jarvis-supervisor: the service did not start; see: journalctl -u jarvis-supervisor" >&2
        else
            echo "jarvis-supervisor is installed and enabled, but not started (see the ✗ lines above)."
            echo "Deploy the code to /home/jarvis/Jarvis, create .env (mode 0600), then: systemctl start jarvis-supervisor"
        fi
    fi
elif [ -d /run/systemd/system ]; then
    # Upgrade: the restart comes from %postun of the old package.
    systemctl daemon-reload || :
fi
exit 0
