# %postun ($1: 0 = package removal, 1+ = upgrade).
# %systemd_postun_with_restart written out. RPM has no purge: on erase, rpm
# deletes the package's files and keeps a changed %config(noreplace) file as
# .rpmsave; this deletes, by name, only what jarvisctl wrote, and keeps (and
# lists) everything else.

# >>> generated files: the same block in debian/postrm and packaging/rpm/postun.sh
# A file belongs to whoever wrote it (docs/design.md, "Who owns a file"). These are
# all the files that jarvisctl or the package scripts write outside the
# package's file list, by name; a directory goes only when it is empty. Not
# here, so kept: hosts.toml, .env files and anything else under
# /etc/jarvis-supervisor, and the deploy history (deploys/, packages/ under
# /var/lib/jarvis-supervisor), which holds copies of the user's code and .env
# and the manifests of what each deploy shipped.
# jarvisctl status --record: the node_exporter textfile, which would go on
# saying "up 1" to every scrape, in the default directory and where the last
# record wrote it (JARVIS_TEXTFILE_DIR); then that record of where.
remove_textfile() {
    for f in /var/lib/prometheus/node-exporter/jarvis_supervisor.prom \
        "$(head -n 1 /var/lib/jarvis-supervisor/textfile.path 2>/dev/null || true)"; do
        case "$f" in
            /*/jarvis_supervisor.prom)
                if [ -f "$f" ] && [ ! -L "$f" ]; then
                    rm -f "$f"
                fi
                ;;
        esac
    done
    rm -f /var/lib/jarvis-supervisor/textfile.path
}

remove_generated() {
    # jarvisctl configure --weekly-restart; the service's 50-jarvisctl.conf is
    # the name reserved for jarvisctl configure.
    rm -f /etc/systemd/system/jarvis-supervisor-restart.timer.d/50-jarvisctl.conf
    rm -f /etc/systemd/system/jarvis-supervisor.service.d/50-jarvisctl.conf
    # jarvisctl configure --code-root/--python: the service's drop-in, and the
    # shipped log rotation rewritten for the moved code root.
    rm -f /etc/systemd/system/jarvis-supervisor.service.d/60-jarvisctl-code-root.conf
    rm -f /etc/logrotate.d/jarvis-code-root
    # jarvisctl instance add: the named instances' log rotation.
    rm -f /etc/logrotate.d/jarvis-instances
    # jarvisctl instance add and remove: each instance's drop-in, live or set
    # aside, and its directory once empty. The instances' users, code,
    # environment files and state stay, as the default instance's do.
    for f in /etc/systemd/system/jarvis-supervisor@*.service.d/50-jarvisctl-instance.conf \
        /etc/systemd/system/jarvis-supervisor@*.service.d/50-jarvisctl-instance.conf.removed; do
        if [ -f "$f" ] && [ ! -L "$f" ]; then
            rm -f "$f"
            rmdir "${f%/*}" 2>/dev/null || true
        fi
    done
    # jarvisctl status --record (the health timer): the memory history, and
    # the metrics.
    rm -f /var/lib/jarvis-supervisor/samples.jsonl
    # jarvisctl pause: who paused the bot and why (the pause file itself is
    # in the code root, the operator's switch, and stays).
    rm -f /var/lib/jarvis-supervisor/pause.json
    # jarvisctl deploy's worker: the digests of the live code it keeps (a
    # cache; the deploy history stays).
    rm -f /var/lib/jarvis-supervisor/deploy-hashes.json /var/lib/jarvis-supervisor/deploy-hashes.json.tmp
    remove_textfile
    # jarvisctl run (hosts without systemd): lock, pid file, process group,
    # notify socket, state and its own log.
    for f in run.lock run.pid .run.pid.tmp run.group notify state.json .state.json.tmp engine.log; do
        rm -f "/run/jarvis-supervisor-run/$f"
    done
    # jarvisctl backoff and check --preflight, in the unit's RuntimeDirectory=.
    rm -f /run/jarvis-supervisor/backoff.json /run/jarvis-supervisor/preflight-failed
    # The temporary file of an atomic write cut short (.tmp and 6 characters).
    for d in /etc/systemd/system/jarvis-supervisor-restart.timer.d \
        /etc/systemd/system/jarvis-supervisor.service.d \
        /var/lib/jarvis-supervisor /run/jarvis-supervisor; do
        for f in "$d"/.tmp??????; do
            if [ -f "$f" ] && [ ! -L "$f" ]; then
                rm -f "$f"
            fi
        done
    done
    # The preinst's mark of a fresh installation.
    rm -f /run/jarvis-supervisor.fresh-install
    # jarvisctl deploy's locks, each unless a deploy holds it now, and the
    # mark of its testing option --pause-swap-after.
    for f in /run/jarvis-deploy.lock /run/jarvis-deploy-step.lock; do
        if [ -f "$f" ] && command -v flock >/dev/null 2>&1; then
            flock -n "$f" rm -f "$f" 2>/dev/null || true
        fi
    done
    rm -f /run/jarvis-deploy-paused
    # The memory cgroup of jarvisctl run (rmdir fails while a process is in it).
    rmdir /sys/fs/cgroup/jarvis-supervisor-run 2>/dev/null || true
    for d in /etc/systemd/system/jarvis-supervisor.service.d \
        /etc/systemd/system/jarvis-supervisor-restart.timer.d \
        /run/jarvis-supervisor-run /run/jarvis-supervisor \
        /etc/jarvis-supervisor /var/lib/jarvis-supervisor; do
        rmdir "$d" 2>/dev/null || true
    done
}

# Where the user's files can remain once the package's are gone.
KEPT_DIRS="/etc/jarvis-supervisor /var/lib/jarvis-supervisor
/etc/systemd/system/jarvis-supervisor.service.d
/etc/systemd/system/jarvis-supervisor-health.service.d
/etc/systemd/system/jarvis-supervisor-health.timer.d
/etc/systemd/system/jarvis-supervisor-restart.service.d
/etc/systemd/system/jarvis-supervisor-restart.timer.d"
KEPT_MAX=20

# $1 single-quoted for sh, whatever it contains.
sh_quote() {
    rest=$1
    done_=
    while :; do
        case "$rest" in
            *"'"*)
                done_="$done_${rest%%"'"*}'\\''"
                rest=${rest#*"'"}
                ;;
            *) break ;;
        esac
    done
    printf "'%s%s'" "$done_" "$rest"
}

# Each entry directly in the kept directories, in order: "$1 PATH" for the
# first KEPT_MAX; sets kept_n to their number.
each_kept() {
    kept_n=0
    for d in $KEPT_DIRS; do
        [ -d "$d" ] || continue
        for p in "$d"/* "$d"/.[!.]* "$d"/..?*; do
            if [ -e "$p" ] || [ -L "$p" ]; then
                kept_n=$((kept_n + 1))
                if [ "$kept_n" -le "$KEPT_MAX" ]; then
                    "$1" "$p"
                fi
            fi
        done
    done
}

show_path() {
    case "$1" in
        /var/lib/jarvis-supervisor/deploys) note=" (deploy history: copies of your code and .env)" ;;
        /var/lib/jarvis-supervisor/packages) note=" (the packages you shipped)" ;;
        /var/lib/jarvis-supervisor/wheelhouses) note=" (the wheels deploy --wheelhouse shipped)" ;;
        *) note= ;;
    esac
    if [ -d "$1" ] && [ ! -L "$1" ]; then
        printf '  %s/%s\n' "$1" "$note"
    else
        printf '  %s%s\n' "$1" "$note"
    fi
}

show_rm() {
    printf '  rm -rf -- %s\n' "$(sh_quote "$1")"
}

# Paths only, never what is in them.
report_kept() {
    each_kept :
    [ "$kept_n" -gt 0 ] || return 0
    echo "jarvis-supervisor: kept $kept_n paths that are yours (what you put there, and the deploy history of your code and .env):"
    each_kept show_path
    if [ "$kept_n" -gt "$KEPT_MAX" ]; then
        echo "  and $((kept_n - KEPT_MAX)) more"
    fi
    echo "jarvis-supervisor: to delete them by hand, only if you mean to:"
    each_kept show_rm
    if [ "$kept_n" -gt "$KEPT_MAX" ]; then
        all=
        for d in $KEPT_DIRS; do
            if [ -d "$d" ]; then
                all="$all $d"
            fi
        done
        echo "  rm -rf --$all   (all of it, the $((kept_n - KEPT_MAX)) more included)"
    fi
}
# <<< generated files

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

if [ "$1" -eq 0 ]; then
    remove_generated
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
fi
if [ "$1" -ge 1 ]; then
    # Upgrade: restart only a running service.
    if [ -d /run/systemd/system ]; then
        case "$(systemctl show -p ActiveState --value jarvis-supervisor.service 2>/dev/null)" in
            activating | deactivating | failed)
                # A crash loop: a restart would wait behind the backoff
                # (issue 27) and restart the crash. Stopped (a stop ends the
                # backoff's wait at once), its backoff count dropped, then
                # started when check finds it startable, as a fresh install.
                systemctl stop jarvis-supervisor.service || :
                rm -f /run/jarvis-supervisor/backoff.json
                reset_failed_by_stop
                if timeout --kill-after=10 120 jarvisctl check >/dev/null; then
                    systemctl start jarvis-supervisor.service \
                        || echo "jarvis-supervisor: the service did not start; see: journalctl -u jarvis-supervisor" >&2
                else
                    echo "jarvis-supervisor: not started after the upgrade: sudo jarvisctl check says why" >&2
                fi
                ;;
            *) systemctl try-restart jarvis-supervisor.service || : ;;
        esac
    fi
else
    # Package removal: the bot's files are never deleted.
    echo "jarvis-supervisor: kept the user jarvis, /home/jarvis/Jarvis (code, .env, data/, logs/), /home/jarvis/.lifeos and /home/jarvis/.local/state/jarvis."
    echo "jarvis-supervisor: they are yours; delete them by hand only if you mean to."
    report_kept
fi
exit 0
