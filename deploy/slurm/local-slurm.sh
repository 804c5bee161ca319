#!/bin/bash
# A one-node Slurm on this machine, to run the recipe for real (make test-slurm).
#
#     sudo deploy/slurm/local-slurm.sh install   # apt-get install slurm-wlm munge slurmdbd mariadb-server
#     sudo deploy/slurm/local-slurm.sh start     # write the config, start the daemons
#     deploy/slurm/local-slurm.sh status         # sinfo, and a one-task srun
#     sudo deploy/slurm/local-slurm.sh stop      # stop the three daemons
#
# The node is this host (`hostname -s`) with the CPUs it has (LOCAL_SLURM_CPUS, default
# all of them) and LOCAL_SLURM_MEMORY MB (default 20000, at most what the host has), in one
# partition `local`. No cgroups (proctrack/linuxproc, task/none), so it also runs in a
# container. Accounting (`sacct`): slurmdbd on a MariaDB of its own (socket only, no
# network) when both are installed, unless LOCAL_SLURM_ACCOUNTING=0; without it,
# finished jobs are listed by `scontrol show job` for LOCAL_SLURM_MINJOBAGE s (default
# 3600) and, always, in the job completion log $STATE/jobcomp.log. Configuration and
# state live under LOCAL_SLURM_DIR (default /var/lib/dlmm-slurm); /etc/slurm/slurm.conf
# (and slurmdbd.conf) link to its files, written only if there is none there or it is
# one this script wrote. munged, slurmctld, slurmd and slurmdbd listen on their usual
# ports (Slurm has no option to bind to one address); munge authenticates every call.
set -euo pipefail

STATE=${LOCAL_SLURM_DIR:-/var/lib/dlmm-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by dlmm deploy/slurm/local-slurm.sh"
NODE=$(hostname -s)
DBD_CONF=/etc/slurm/slurmdbd.conf
MYSQL_SOCKET=/run/mysqld/mysqld.sock  # the client library's default, which slurmdbd uses
MYSQL_PID=/run/mysqld/dlmm-slurm-mariadbd.pid  # a folder mariadbd (user mysql) can write

accounting() {  # 0 (true) when slurmdbd and MariaDB are installed and not turned off
    [ "${LOCAL_SLURM_ACCOUNTING:-1}" != 0 ] && command -v slurmdbd >/dev/null &&
        [ -x /usr/sbin/mariadbd ] && command -v mariadb-install-db >/dev/null
}

die() { echo "local-slurm.sh: error: $*" >&2; exit 2; }
need_root() { [ "$(id -u)" = 0 ] || die "'$1' needs root (sudo)"; }

write_config() {
    local cpus mem host_mem
    cpus=${LOCAL_SLURM_CPUS:-$(nproc)}
    host_mem=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
    mem=${LOCAL_SLURM_MEMORY:-20000}
    [ "$mem" -le "$host_mem" ] || die "LOCAL_SLURM_MEMORY=$mem MB but the host has $host_mem MB"
    for f in "$CONF" "$DBD_CONF"; do
        if [ -e "$f" ] && ! grep -qF "$MARK" "$f"; then
            die "$f exists and was not written by this script; not touching it"
        fi
    done
    mkdir -p "$STATE"/{ctld,slurmd,log,run} /etc/slurm
    local storage="AccountingStorageType=accounting_storage/none"
    local gather="JobAcctGatherType=jobacct_gather/none"
    if accounting; then
        storage="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$NODE"
        gather="JobAcctGatherType=jobacct_gather/linux"
        cat > "$STATE/slurmdbd.conf" <<DBD
$MARK
AuthType=auth/munge
DbdHost=$NODE
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
DBD
        chmod 600 "$STATE/slurmdbd.conf"
        ln -sfn "$STATE/slurmdbd.conf" "$DBD_CONF"
    fi
    cat > "$STATE/slurm.conf" <<CONFIG
$MARK
ClusterName=dlmm-local
SlurmctldHost=$NODE
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=${LOCAL_SLURM_MINJOBAGE:-3600}
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
$storage
$gather
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/jobcomp.log
NodeName=$NODE CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONFIG
    ln -sfn "$STATE/slurm.conf" "$CONF"
}

start_munge() {
    [ -s /etc/munge/munge.key ] || { /usr/sbin/mungekey --create 2>/dev/null || \
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null; }
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    if ! munge -n >/dev/null 2>&1; then
        runuser -u munge -- /usr/sbin/munged
    fi
    for _ in $(seq 50); do munge -n >/dev/null 2>&1 && return 0; sleep 0.1; done
    die "munged did not start (see /var/log/munge/munged.log)"
}

pid_running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_accounting() {  # MariaDB (root by its unix socket, no network), then slurmdbd
    if [ ! -d "$STATE/mysql/mysql" ]; then
        mariadb-install-db --user=mysql --datadir="$STATE/mysql" \
            --auth-root-authentication-method=socket >"$STATE/log/mariadb-install.log" 2>&1 ||
            die "mariadb-install-db failed (see $STATE/log/mariadb-install.log)"
    fi
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    if ! pid_running "$MYSQL_PID"; then
        if [ -e "$MYSQL_SOCKET" ]; then
            mariadb --socket="$MYSQL_SOCKET" -e "select 1" >/dev/null 2>&1 &&
                die "a MariaDB/MySQL server not started by this script uses $MYSQL_SOCKET"
            rm -f "$MYSQL_SOCKET"  # left by a server that is gone
        fi
        /usr/sbin/mariadbd --user=mysql --datadir="$STATE/mysql" --socket="$MYSQL_SOCKET" \
            --skip-networking --pid-file="$MYSQL_PID" \
            --log-error="$STATE/mysql/mariadb.err" >/dev/null 2>&1 &
    fi
    for _ in $(seq 100); do
        mariadb --socket="$MYSQL_SOCKET" -e "select 1" >/dev/null 2>&1 && break; sleep 0.2
    done
    mariadb --socket="$MYSQL_SOCKET" -e "create database if not exists slurm_acct_db" ||
        die "MariaDB did not start (see $STATE/mysql/mariadb.err)"
    pid_running "$STATE/run/slurmdbd.pid" || /usr/sbin/slurmdbd
    for _ in $(seq 100); do sacctmgr -n list cluster >/dev/null 2>&1 && return 0; sleep 0.2; done
    die "slurmdbd did not start (see $STATE/log/slurmdbd.log)"
}

start() {
    need_root start
    command -v slurmctld >/dev/null || die "Slurm is not installed: run '$0 install'"
    write_config
    start_munge
    if accounting; then
        start_accounting
        sacctmgr -n list cluster format=cluster | grep -qw dlmm-local ||
            sacctmgr -i add cluster dlmm-local >/dev/null
    fi
    pid_running "$STATE/run/slurmctld.pid" || /usr/sbin/slurmctld -f "$CONF"
    pid_running "$STATE/run/slurmd.pid" || /usr/sbin/slurmd -f "$CONF"
    for _ in $(seq 100); do
        if sinfo -h -N -o "%t" 2>/dev/null | grep -qE "^(idle|mix|alloc)"; then
            sinfo
            return 0
        fi
        sleep 0.2
    done
    sinfo -R || true
    die "the node did not come up (see $STATE/log/slurmctld.log and slurmd.log)"
}

stop_daemon() {  # pid file, name
    if pid_running "$1"; then
        local pid; pid=$(cat "$1")
        kill "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        echo "stopped $2 ($pid)"
    fi
}

stop() {
    need_root stop
    stop_daemon "$STATE/run/slurmd.pid" slurmd
    stop_daemon "$STATE/run/slurmctld.pid" slurmctld
    stop_daemon "$STATE/run/slurmdbd.pid" slurmdbd
    stop_daemon "$MYSQL_PID" mariadbd
    stop_daemon /run/munge/munged.pid munged
}

case ${1:-} in
    install)
        need_root install
        apt-get install -y slurm-wlm munge slurmdbd mariadb-server ;;
    start) start ;;
    stop) stop ;;
    status)
        sinfo
        srun --ntasks=1 --time=1 hostname ;;
    *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
