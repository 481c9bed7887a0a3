#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the tests and for trying hydra/launcher=slurm.
#
#   scripts/local_slurm.sh install        # as root: Debian's slurmctld, slurmd, slurm-client, munge
#   eval "$(scripts/local_slurm.sh start)" # as root: starts it, prints `export SLURM_CONF=...`
#   sbatch --wrap hostname; squeue; sinfo  # any SLURM client command, with SLURM_CONF exported
#   scripts/local_slurm.sh stop           # cancels its jobs and stops its daemons by their PIDs
#
# `start` installs nothing: it writes a munge key, slurm.conf and cgroup.conf into a new
# temporary directory (or $LOCAL_SLURM_DIR), starts munged as the munge user, slurmctld and
# slurmd, and waits until the node is idle. `stop` finds that directory from $SLURM_CONF or its
# argument. Nothing of the machine's own SLURM or munge set-up (/etc/slurm, /etc/munge) is used
# or changed, so this cluster cannot be confused with a real one.
set -euo pipefail

PACKAGES=(slurmctld slurmd slurm-client munge)
IDLE_TIMEOUT_S=60

die() { echo "local_slurm.sh: $*" >&2; exit 1; }

missing_programs() {
    local program
    for program in munged slurmctld slurmd sbatch scontrol; do
        command -v "$program" >/dev/null || echo -n " $program"
    done
}

# The first pair of consecutive TCP ports from 6817 (SLURM's own defaults) that nothing listens on.
free_ports() {
    local port
    for port in $(seq 6817 2 6917); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null &&
            ! (exec 3<>"/dev/tcp/127.0.0.1/$((port + 1))") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    die "no free pair of ports between 6817 and 6918"
}

write_config() {  # $1: the cluster's directory
    local dir=$1 host node ctld_port
    host=$(hostname -s)
    # slurmd -C prints this machine's CPUs, sockets, cores, threads and memory as a node line.
    node=$(slurmd -C | head -n 1)
    [[ $node == NodeName=* ]] || die "slurmd -C did not describe this node: $node"
    ctld_port=$(free_ports)
    cat >"$dir/slurm.conf" <<EOF
# Written by scripts/local_slurm.sh: a one-node cluster whose state lives in $dir.
ClusterName=local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$((ctld_port + 1))
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
# No cgroups, no accounting daemon: what runs in a container without systemd.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
$node NodeAddr=127.0.0.1 NodeHostname=$host State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    # 22.05 autodetects the cgroup version even with the cgroup plugins off, and the detection
    # fails in containers; it has no `disabled`, so name v1, which is then never used.
    echo "CgroupPlugin=cgroup/v1" >"$dir/cgroup.conf"
}

start_munged() {  # $1: the cluster's directory
    local dir=$1/munge
    mkdir -p "$dir"
    head -c 1024 /dev/urandom >"$dir/munge.key"
    chown -R munge:munge "$dir"
    chmod 0755 "$dir"
    chmod 0400 "$dir/munge.key"
    runuser -u munge -- munged --socket="$dir/munge.socket" --key-file="$dir/munge.key" \
        --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munged.seed"
}

wait_until_idle() {
    local deadline=$((SECONDS + IDLE_TIMEOUT_S)) state=""
    while ((SECONDS < deadline)); do
        state=$(sinfo --noheader --Node --format=%t 2>/dev/null || true)
        [[ $state == idle ]] && return
        sleep 0.5
    done
    die "the node did not become idle within ${IDLE_TIMEOUT_S}s (state: ${state:-none}); see $SLURM_CONF's log/ directory"
}

start() {
    [[ $(id -u) == 0 ]] || die "start needs root (munged runs as the munge user, slurmd as root)"
    local missing
    missing=$(missing_programs)
    [[ -z $missing ]] || die "not installed:$missing; run: $0 install"
    local dir=${LOCAL_SLURM_DIR:-$(mktemp -d -t local-slurm.XXXXXX)}
    mkdir -p "$dir"/{state,spool,log}
    chmod 0755 "$dir"  # the munge user must reach its socket directory inside
    write_config "$dir"
    export SLURM_CONF=$dir/slurm.conf
    start_munged "$dir"
    slurmctld -i
    slurmd
    wait_until_idle
    echo "local SLURM cluster up: node $(hostname -s), partition debug; stop it with: $0 stop" >&2
    echo "export SLURM_CONF=$SLURM_CONF"
}

# Send SIGTERM to the processes whose PIDs these files hold, then wait until they are gone
# (SIGKILL to any still there after 10 s).
stop_pid_files() {
    local file pids=() pid
    for file in "$@"; do
        [[ -f $file ]] && pids+=("$(<"$file")")
    done
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for _ in $(seq 100); do
        for pid in "${pids[@]}"; do
            kill -0 "$pid" 2>/dev/null && sleep 0.1 && continue 2
        done
        return 0
    done
    for pid in "${pids[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
}

stop() {
    local conf=${1:-${SLURM_CONF:-}}
    [[ -n $conf ]] || die "stop: pass the cluster's directory or export SLURM_CONF"
    [[ -d $conf ]] && conf=$conf/slurm.conf
    [[ -f $conf ]] || die "stop: $conf does not exist"
    local dir
    dir=$(dirname "$conf")
    grep -q "^# Written by scripts/local_slurm.sh" "$conf" || die "stop: $conf is not a local cluster"
    export SLURM_CONF=$conf
    # Cancel the jobs first, so that slurmd ends their processes before it goes itself: SIGTERM,
    # and SIGKILL after KillWait (30 s) to those that ignore it.
    if [[ -f $dir/slurmctld.pid ]] && kill -0 "$(<"$dir/slurmctld.pid")" 2>/dev/null; then
        scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
        for _ in $(seq 450); do
            [[ -z $(squeue --noheader --format=%i 2>/dev/null) ]] && break
            sleep 0.1
        done
    fi
    stop_pid_files "$dir/slurmd.pid" "$dir/slurmctld.pid"
    stop_pid_files "$dir/munge/munged.pid"  # last: slurmd and slurmctld authenticate through it
    rm -rf "$dir"
    echo "local SLURM cluster in $dir stopped" >&2
}

install() {
    if [[ -z $(missing_programs) ]]; then
        echo "local_slurm.sh: ${PACKAGES[*]} are installed" >&2
        return
    fi
    [[ $(id -u) == 0 ]] || die "install needs root"
    apt-get update -qq
    apt-get install -y -qq "${PACKAGES[@]}"
}

case ${1:-} in
install) install ;;
start) start ;;
stop) stop "${2:-}" ;;
*) die "usage: $0 install|start|stop [dir]" ;;
esac
