# %post ($1: 1 = initial installation, 2+ = upgrade).
# %systemd_post written out: cargo-generate-rpm does not expand macros.
# A unit that an operator's stop left failed (apt remove or rpm -e during a
# crash loop) is not a unit that gave up: reset it. The evidence is PID 1's
# own journal entries, which the service user cannot write: the newest of a
# stop job's end (JOB_TYPE=stop) and "Start request repeated too quickly."
# (the start limit), as jarvisctl check reads them. The same in debian/postinst.
reset_failed_by_stop() {
    [ "$(systemctl show -p ActiveState --value jarvis-supervisor.service 2>/dev/null)" = failed ] || return 0
    last=$(journalctl _PID=1 UNIT=jarvis-supervisor.service --since -24h -o json --output-fields=MESSAGE,JOB_TYPE -q --no-pager 2>/dev/null \
        | grep -E '"JOB_TYPE":"stop"|Start request repeated too quickly' | tail -n 1 || true)
    case "$last" in
        *'"JOB_TYPE":"stop"'*) systemctl reset-failed jarvis-supervisor.service >/dev/null 2>&1 || : ;;
    esac
}
jarvisctl setup || exit 1
# A deploy cut off on this host is finished or undone before the start.
jarvisctl settle --by install \
    || echo "jarvis-supervisor: a cut-off deploy could not be settled (see above); the bot's start will try again" >&2
# %tmpfiles_create, once the user exists.
if command -v systemd-tmpfiles >/dev/null 2>&1; then
    systemd-tmpfiles --create jarvis-supervisor.conf >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ]; then
    # Initial installation: %systemd_post. The package's preset file
    # (50-jarvis-supervisor.preset) enables both; an administrator's preset
    # in /etc/systemd/system-preset/ may say otherwise.
    systemctl --no-reload preset jarvis-supervisor.target jarvis-supervisor.service jarvis-supervisor-health.timer >/dev/null 2>&1 || :
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload || :
        systemctl start jarvis-supervisor-health.timer || :
        # check is bounded (90 s, docs/commands.md); the timeout is a second guard:
        # the rpm transaction waits for it.
        reset_failed_by_stop
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
