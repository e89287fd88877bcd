# %postun ($1: 0 = package removal, 1+ = upgrade).
# %systemd_postun_with_restart written out.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
fi
if [ "$1" -ge 1 ]; then
    # Upgrade: restart only a running service.
    if [ -d /run/systemd/system ]; then
        systemctl try-restart jarvis-supervisor.service || :
    fi
else
    # Package removal: the bot's files are never deleted.
    echo "jarvis-supervisor: kept the user jarvis, /home/jarvis/Jarvis (code, .env, data/, logs/), /home/jarvis/.lifeos and /home/jarvis/.local/state/jarvis."
fi
exit 0
