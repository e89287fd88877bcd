# %preun ($1: 0 = package removal, 1+ = upgrade). %systemd_preun written out.
if [ "$1" -eq 0 ]; then
    # Package removal, not upgrade: stop and disable.
    # Every instance too (the target's stop reaches them through PartOf=;
    # an instance started alone is stopped by name).
    systemctl --no-reload disable --now jarvis-supervisor.target jarvis-supervisor.service jarvis-supervisor-health.timer jarvis-supervisor-restart.timer >/dev/null 2>&1 || :
    systemctl stop 'jarvis-supervisor@*.service' >/dev/null 2>&1 || :
fi
exit 0
