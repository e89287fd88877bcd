# %preun ($1: 0 = package removal, 1+ = upgrade). %systemd_preun written out.
if [ "$1" -eq 0 ]; then
    # Package removal, not upgrade: stop and disable.
    systemctl --no-reload disable --now jarvis-supervisor.service jarvis-supervisor-health.timer jarvis-supervisor-restart.timer >/dev/null 2>&1 || :
fi
exit 0
