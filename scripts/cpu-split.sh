# Sourced by bench.sh and flamegraph.sh: how the CPUs are split between the server and the
# load generator. With 4+ cores the load generator gets the upper half; with 2-3 the last
# core; the server the rest. Sets CORES, SERVER_CPUS, SERVER_NCPU, LOAD_CPUS.
CORES=$(nproc)
if ((CORES >= 4)); then
    LOAD_CPUS="$((CORES / 2))-$((CORES - 1))"; SERVER_CPUS="0-$((CORES / 2 - 1))"; SERVER_NCPU=$((CORES / 2))
elif ((CORES >= 2)); then
    LOAD_CPUS="$((CORES - 1))"; SERVER_CPUS="0-$((CORES - 2))"; SERVER_NCPU=$((CORES - 1))
else
    LOAD_CPUS="0"; SERVER_CPUS="0"; SERVER_NCPU=1
fi
