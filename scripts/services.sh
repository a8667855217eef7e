#!/usr/bin/env bash
# Start or stop the throwaway services the test suite uses: PostgreSQL (catalog backend) and a
# one-node Slurm cluster on localhost (cluster executor), and install dicom3tools (dciodvfy,
# the independent DICOM validator) and R with nlme, emmeans and lme4 (the reference the MMRM
# engine is checked against, tests/stats/test_mmrm_vs_r.py) and Chromium (headless browser of the
# report pages' tests, tests/browser/, driven by Playwright). All come from Debian's packages.
#
#   source scripts/services.sh start   # exports KNEESCOPE_TEST_PG_URL and KNEESCOPE_TEST_SLURM=1
#                                      # and KNEESCOPE_TEST_RSCRIPT (or KNEESCOPE_R_UNAVAILABLE)
#                                      # and KNEESCOPE_TEST_CHROMIUM (or KNEESCOPE_CHROMIUM_UNAVAILABLE)
#   scripts/services.sh stop
#
# State lives in $KNEESCOPE_SERVICES_DIR (default /tmp/kneescope-services). Needs root for
# apt-get, munge and slurm; without root the services are skipped and their tests skip.
set -u

SVC_DIR="${KNEESCOPE_SERVICES_DIR:-/tmp/kneescope-services}"
PG_PORT="${KNEESCOPE_PG_PORT:-55432}"

_log() { printf 'services: %s\n' "$*" >&2; }

_apt_install() {
    # optional first argument --no-install-recommends (R's recommends pull in hundreds of packages)
    local opts=() missing=()
    if [ "${1:-}" = "--no-install-recommends" ]; then opts+=("$1"); shift; fi
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    _log "installing ${missing[*]} from Debian's packages"
    if [ ! -f "$SVC_DIR/.apt-updated" ]; then
        apt-get update -qq >/dev/null 2>&1 || true
        touch "$SVC_DIR/.apt-updated"
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${opts[@]+"${opts[@]}"} "${missing[@]}" \
        >/dev/null 2>&1
}

start_postgres() {
    _apt_install postgresql || { _log "postgresql could not be installed"; return 1; }
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$bin" ] || { _log "no PostgreSQL binaries found"; return 1; }
    local data="$SVC_DIR/pg"
    if [ -f "$data/postmaster.pid" ]; then
        runuser -u postgres -- "$bin/pg_ctl" -D "$data" stop -m immediate >/dev/null 2>&1 || true
    fi
    rm -rf "$data"
    mkdir -p "$data"
    chown postgres "$data"
    runuser -u postgres -- "$bin/initdb" -D "$data" -A trust -U postgres >/dev/null || return 1
    runuser -u postgres -- "$bin/pg_ctl" -D "$data" -o "-p $PG_PORT -k $data -h 127.0.0.1" \
        -l "$data/server.log" -w start >/dev/null || { cat "$data/server.log" >&2; return 1; }
    export KNEESCOPE_TEST_PG_URL="postgresql+psycopg://postgres@127.0.0.1:$PG_PORT/postgres"
    _log "PostgreSQL up at $KNEESCOPE_TEST_PG_URL"
}

stop_postgres() {
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -n "$bin" ] && [ -f "$SVC_DIR/pg/postmaster.pid" ]; then
        runuser -u postgres -- "$bin/pg_ctl" -D "$SVC_DIR/pg" stop -m fast >/dev/null 2>&1 || true
    fi
}

start_slurm() {
    _apt_install slurmctld slurmd slurm-client munge || { _log "slurm could not be installed"; return 1; }
    local host cpus mem_mb
    host=$(hostname)
    cpus=$(nproc)
    mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 2048 ))
    # munge
    mkdir -p /etc/munge /var/lib/munge /run/munge /var/log/munge
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown -R munge:munge /etc/munge /var/lib/munge /run/munge /var/log/munge
    chmod 400 /etc/munge/munge.key
    pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged || return 1
    # slurm
    local state="$SVC_DIR/slurm"
    mkdir -p "$state/ctld" "$state/d" /etc/slurm
    cat > /etc/slurm/slurm.conf <<CONF
ClusterName=kneescope
SlurmctldHost=$host
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
ReturnToService=2
MpiDefault=none
SchedulerType=sched/backfill
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    stop_slurm
    slurmctld || return 1
    slurmd || return 1
    local i
    for i in $(seq 1 30); do
        if sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
            export KNEESCOPE_TEST_SLURM=1
            _log "Slurm up on $host ($cpus CPUs, ${mem_mb} MB)"
            return 0
        fi
        sleep 0.5
    done
    _log "Slurm node did not become idle"; sinfo >&2 || true
    return 1
}

start_r() {
    _apt_install --no-install-recommends r-base-core r-cran-nlme r-cran-emmeans r-cran-lme4 \
        || { _log "R could not be installed"; return 1; }
    Rscript -e 'suppressPackageStartupMessages({library(nlme); library(emmeans); library(lme4)})' \
        >/dev/null 2>&1 || { _log "R is installed but nlme, emmeans or lme4 does not load"; return 1; }
    export KNEESCOPE_TEST_RSCRIPT
    KNEESCOPE_TEST_RSCRIPT=$(command -v Rscript)
    _log "R up at $KNEESCOPE_TEST_RSCRIPT ($(Rscript --version 2>&1 | head -n 1))"
}

start_chromium() {
    # Debian's chromium (Playwright drives it through executable_path; no browser download);
    # fonts-liberation is only recommended by chromium: without a font pages render no text
    _apt_install --no-install-recommends chromium chromium-driver fonts-liberation \
        || { _log "chromium could not be installed"; return 1; }
    local bin
    bin=$(command -v chromium) || { _log "chromium installed but not on PATH"; return 1; }
    "$bin" --headless --no-sandbox --disable-gpu --version >/dev/null 2>&1 \
        || { _log "chromium does not start"; return 1; }
    export KNEESCOPE_TEST_CHROMIUM="$bin"
    _log "Chromium up at $KNEESCOPE_TEST_CHROMIUM ($("$bin" --version 2>/dev/null | head -n 1))"
}

stop_slurm() {
    local state="$SVC_DIR/slurm" f
    for f in "$state/slurmd.pid" "$state/slurmctld.pid"; do
        if [ -f "$f" ]; then kill "$(cat "$f")" 2>/dev/null || true; rm -f "$f"; fi
    done
    sleep 0.2
}

case "${1:-}" in
    start)
        mkdir -p "$SVC_DIR"
        if [ "$(id -u)" -ne 0 ]; then
            _log "not root: PostgreSQL and Slurm tests will be skipped"
            if ! command -v Rscript >/dev/null 2>&1; then
                export KNEESCOPE_R_UNAVAILABLE="not root: apt-get cannot install R"
                _log "R not installed; the R comparison tests will be skipped"
            fi
            if command -v chromium >/dev/null 2>&1; then
                export KNEESCOPE_TEST_CHROMIUM
                KNEESCOPE_TEST_CHROMIUM=$(command -v chromium)
            else
                export KNEESCOPE_CHROMIUM_UNAVAILABLE="not root: apt-get cannot install chromium"
                _log "Chromium not installed; the browser tests will be skipped"
            fi
        else
            _apt_install dicom3tools || _log "dicom3tools not installed; dciodvfy tests will skip"
            start_postgres || _log "PostgreSQL not started; its tests will be skipped"
            start_slurm || _log "Slurm not started; its tests will be skipped"
            if ! start_r; then
                export KNEESCOPE_R_UNAVAILABLE="scripts/services.sh could not install R with nlme and emmeans from Debian's packages"
                _log "R not installed; the R comparison tests will be skipped"
            fi
            if ! start_chromium; then
                export KNEESCOPE_CHROMIUM_UNAVAILABLE="scripts/services.sh could not install chromium from Debian's packages"
                _log "Chromium not installed; the browser tests will be skipped"
            fi
        fi
        ;;
    stop)
        stop_postgres
        stop_slurm
        ;;
    *)
        echo "usage: source scripts/services.sh start | scripts/services.sh stop" >&2
        ;;
esac
