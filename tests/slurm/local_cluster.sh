#!/usr/bin/env bash
# A throwaway single-node SLURM cluster on this machine, for testing the SLURM profile.
#   bash tests/slurm/local_cluster.sh up     # install (Debian slurm-wlm, munge) if needed, configure, start
#   bash tests/slurm/local_cluster.sh down   # stop every daemon it started, remove its slurm.conf
#   bash tests/slurm/local_cluster.sh status
# No accounting (so no sacct); MinJobAge=300 s so squeue-based status checks see finished jobs.
# Needs root (it writes /etc/slurm and /etc/munge and starts system daemons).
set -euo pipefail

STATE=/tmp/eat-asd-slurm
CONF_DIR=/etc/slurm
NODE=localhost

log() { echo "[local-slurm] $*" >&2; }

install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
        return
    fi
    log "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq slurm-wlm munge >/dev/null
}

configure() {
    local cpus mem_mb
    cpus=$(nproc)
    mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
    mkdir -p "$CONF_DIR" "$STATE"/{ctld,d,log} /etc/munge /run/munge /var/lib/munge /var/log/munge
    cat > "$CONF_DIR/slurm.conf" <<CONF
ClusterName=eatasd
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=300
InactiveLimit=0
KillWait=5
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
    chmod 400 /etc/munge/munge.key
}

wait_for() {  # wait_for SECONDS COMMAND...
    local deadline=$(( $(date +%s) + $1 )); shift
    until "$@" >/dev/null 2>&1; do
        if [ "$(date +%s)" -ge "$deadline" ]; then return 1; fi
        sleep 0.5
    done
}

up() {
    install
    down quiet || true
    configure
    if ! pgrep -x munged >/dev/null; then
        runuser -u munge -- /usr/sbin/munged
    fi
    wait_for 10 bash -c 'munge -n | unmunge' || { log "munge does not start"; exit 1; }
    slurmctld
    slurmd -N "$NODE"
    wait_for 30 scontrol ping || { log "slurmctld does not answer"; tail -20 "$STATE/log/slurmctld.log" >&2; exit 1; }
    scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
    if ! wait_for 30 bash -c "sinfo -h -N -o '%T' | grep -qE '^(idle|mixed|allocated)'"; then
        log "node does not come up"; sinfo -N >&2 || true; tail -20 "$STATE/log/slurmd.log" >&2; exit 1
    fi
    log "up: $(sinfo -h -o '%P %a %D %T %c CPUs %m MB')"
}

down() {
    local quiet=${1:-}
    for pidfile in "$STATE/slurmd.pid" "$STATE/slurmctld.pid"; do
        if [ -f "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
    done
    pkill -x slurmd 2>/dev/null || true
    pkill -x slurmctld 2>/dev/null || true
    pkill -x slurmstepd 2>/dev/null || true
    pkill -x munged 2>/dev/null || true
    wait_for 15 bash -c '! pgrep -x "slurmd|slurmctld|munged"' || true
    rm -rf "$STATE"
    # our slurm.conf goes too: with it and no controller, every `scontrol show config` waits ~9 s, and the
    # Snakemake SLURM plugin asks it whenever it is imported, by every Snakemake process
    if grep -qx 'ClusterName=eatasd' "$CONF_DIR/slurm.conf" 2>/dev/null; then rm -f "$CONF_DIR/slurm.conf"; fi
    [ -n "$quiet" ] || log "down"
}

status() {
    sinfo && squeue
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
