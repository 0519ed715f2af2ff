#!/usr/bin/env bash
# A throw-away one-node Slurm cluster on this machine, for trying `--executor submitit` for real.
#
#   scripts/slurm_cluster.sh start [DIR]   # prints SLURM_CONF=DIR/slurm.conf and PARTITION=kddbench
#   export SLURM_CONF=DIR/slurm.conf       # then sinfo, sbatch and kddbench use this cluster
#   kddbench run SUITE --executor 'submitit[cluster=slurm,partition=kddbench,cpus=1]'
#   scripts/slurm_cluster.sh stop DIR      # cancels its jobs, stops its daemons by pid
#
# Needs root and Debian's slurmctld, slurmd, slurm-client and munge
# (apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge: about 25 s on a
# fresh Debian 12, apt-get update included).  No systemd and nothing under /etc:
# a fresh munge key, slurm.conf (accounting off, the node as `slurmd -C` sees it), state, spool,
# sockets, logs and pid files all live in DIR (a new temporary folder by default).  munged,
# slurmctld and slurmd run in the foreground (-F/-D) in the background of this script; their
# pids are in DIR/*.pid.  `start` waits until sinfo shows the node idle (SLURM_WAIT_S, 60 s);
# when anything fails it prints one line saying why on stderr, stops what it started and exits 1.
# Accounting is off, so sacct does not answer: submitit learns that a task ended from its result
# file only, and a task killed before writing one (scancel without requeue) looks pending to it.
set -uo pipefail

PARTITION=kddbench
DAEMONS=(slurmd slurmctld munged)  # stop order

die() { echo "slurm_cluster: $*" >&2; exit 1; }

stop() {
    local dir=$1 name pid i
    [ -d "$dir" ] || die "no cluster folder $dir"
    if [ -f "$dir/slurm.conf" ] && [ -f "$dir/slurmctld.pid" ]; then
        # cancel the jobs first, so that no slurmstepd outlives slurmd
        SLURM_CONF=$dir/slurm.conf timeout 10 scancel --partition "$PARTITION" >/dev/null 2>&1
        for ((i = 0; i < 50; i++)); do
            [ -z "$(SLURM_CONF=$dir/slurm.conf timeout 5 squeue -h -t R,CG -o %i 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
    for name in "${DAEMONS[@]}"; do
        [ -f "$dir/$name.pid" ] || continue
        pid=$(cat "$dir/$name.pid")
        kill -TERM "$pid" 2>/dev/null
        for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
        rm -f "$dir/$name.pid"
    done
    return 0
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    local dir=${1:-} wait_s=${SLURM_WAIT_S:-60} host node t0 ctld_port slurmd_port name i state
    [ "$(id -u)" = 0 ] || die "needs root (the daemons run as root)"
    for name in munged slurmctld slurmd sinfo sbatch scontrol squeue scancel; do
        command -v "$name" >/dev/null || die "$name not found (apt-get install slurmctld slurmd slurm-client munge)"
    done
    [ -n "$dir" ] || dir=$(mktemp -d /tmp/kddbench-slurm.XXXXXX) || die "cannot make a folder"
    mkdir -p "$dir" && dir=$(cd "$dir" && pwd) || die "cannot use $dir"
    [ -f "$dir/slurmctld.pid" ] && die "$dir already holds a cluster (stop it first)"
    t0=$(date +%s.%N)
    mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log"
    chmod 700 "$dir/munge"
    trap 'stop "$dir" >/dev/null 2>&1' EXIT  # a failed start leaves nothing running

    # munge: its own key and socket, nothing shared with a system munged
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none || die "no munge key"
    chmod 400 "$dir/munge/munge.key"
    munged -F --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
        --pid-file="$dir/munge/munged.pidfile" --log-file="$dir/log/munged.log" \
        --seed-file="$dir/munge/munged.seed" </dev/null >>"$dir/log/munged.out" 2>&1 &
    echo $! >"$dir/munged.pid"
    for ((i = 0; i < 50; i++)); do [ -S "$dir/munge/munge.socket" ] && break; sleep 0.1; done
    munge -n -S "$dir/munge/munge.socket" | unmunge -S "$dir/munge/munge.socket" >/dev/null 2>&1 \
        || die "munged did not start: $(tail -n 1 "$dir/log/munged.log" "$dir/log/munged.out" 2>/dev/null | tr '\n' ' ')"

    host=$(hostname -s)
    node=$(slurmd -C 2>/dev/null | head -n 1)
    case $node in NodeName=*) ;; *) die "slurmd -C did not describe this node: $node" ;; esac
    ctld_port=$(free_port) && slurmd_port=$(free_port) || die "no free port"
    [ "$ctld_port" != "$slurmd_port" ] || slurmd_port=$(free_port)
    cat >"$dir/slurm.conf" <<EOF
# a throw-away one-node cluster made by scripts/slurm_cluster.sh
ClusterName=kddbench
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
CredType=cred/munge
# a requeued job may start again cred_expire + 1 s later (120 s by default)
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pidfile
SlurmdPidFile=$dir/slurmd.pidfile
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
PlugStackConfig=$dir/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
KillWait=5
InactiveLimit=0
MailProg=/bin/true
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    : >"$dir/plugstack.conf"
    export SLURM_CONF=$dir/slurm.conf
    slurmctld -D -c </dev/null >>"$dir/log/slurmctld.out" 2>&1 &
    echo $! >"$dir/slurmctld.pid"
    slurmd -D </dev/null >>"$dir/log/slurmd.out" 2>&1 &
    echo $! >"$dir/slurmd.pid"
    for ((i = 0; i < wait_s * 5; i++)); do
        for name in slurmctld slurmd; do
            kill -0 "$(cat "$dir/$name.pid")" 2>/dev/null \
                || die "$name exited: $(tail -n 2 "$dir/log/$name.log" "$dir/log/$name.out" 2>/dev/null | grep -v '^==' | tr '\n' ' ')"
        done
        state=$(timeout 5 sinfo -h -N -o %t 2>/dev/null | head -n 1)
        [ "$state" = idle ] && break
        sleep 0.2
    done
    [ "$state" = idle ] || die "the node is not idle after ${wait_s}s (sinfo: '${state:-no answer}'); see $dir/log"
    trap - EXIT
    echo "slurm_cluster: $host idle after $(python3 -c "print(f'{$(date +%s.%N) - $t0:.1f}')")s; logs in $dir/log" >&2
    echo "SLURM_CONF=$dir/slurm.conf"
    echo "PARTITION=$PARTITION"
}

case ${1:-} in
    start) start "${2:-}" ;;
    stop) [ -n "${2:-}" ] || die "usage: $0 stop DIR"; stop "$2" ;;
    *) echo "usage: $0 start [DIR] | stop DIR" >&2; exit 2 ;;
esac
