#!/usr/bin/env bash
# A single-node SLURM cluster on this machine for the cluster tests (docs/cluster.md): Debian's
# munge and slurm-wlm, a minimal slurm.conf for localhost (no systemd, no cgroups), munged,
# slurmctld and slurmd started by hand. Sourced by .ci/run as root; idempotent when rerun
# (a running daemon is left running). Prints the partition's name on stdout.
set -euo pipefail

SLURM_PARTITION=${SLURM_PARTITION:-debug}
SLURM_CONF=/etc/slurm/slurm.conf
SLURM_STATE=/var/spool/slurmctld
SLURM_SPOOL=/var/spool/slurmd
SLURM_LOGS=/var/log/slurm

install_slurm() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
        && command -v sbatch >/dev/null; then
        return
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends munge slurm-wlm slurmctld slurmd slurm-client </dev/null >/dev/null
}

# The node as this machine is: its name, CPUs and memory (MiB, a little kept back for the OS).
write_slurm_conf() {
    local host cpus mem
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
    mkdir -p /etc/slurm "$SLURM_STATE" "$SLURM_SPOOL" "$SLURM_LOGS"
    # Jobs requeued after a time-out are eligible again at once (no BeginTime hold) and
    # finished jobs leave the controller after MinJobAge, so the tests wait on seconds, not minutes.
    cat >"$SLURM_CONF" <<CONF
ClusterName=lightyolo
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=$SLURM_STATE
SlurmdSpoolDir=$SLURM_SPOOL
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$SLURM_LOGS/slurmctld.log
SlurmdLogFile=$SLURM_LOGS/slurmd.log
MinJobAge=30
KillWait=10
InactiveLimit=0
Waittime=0
JobRequeue=1
MaxArraySize=1001
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$SLURM_PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
}

start_munge() {
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        return
    fi
    [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge && chown munge:munge /run/munge
    su -s /bin/sh munge -c /usr/sbin/munged
}

start_slurm() {
    pgrep -x slurmctld >/dev/null || slurmctld
    pgrep -x slurmd >/dev/null || slurmd
    local tries=0
    until sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; do
        tries=$((tries + 1))
        if [ "$tries" -gt 60 ]; then
            echo "slurm did not come up; see $SLURM_LOGS" >&2
            return 1
        fi
        scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
        sleep 1
    done
}

install_slurm
# The node's line names this machine's CPUs and memory: written anew only when the daemons
# are not up yet (a running slurmctld keeps the file it read).
pgrep -x slurmctld >/dev/null || write_slurm_conf
start_munge
start_slurm
echo "$SLURM_PARTITION"
