"""The figures of benches/lib.sh's interleaved_rounds and sliced_round: per node, the medians over
the rounds of req/s (wrk's), req per CPU-second (the requests over the node's CPU seconds in the
round) and busy cores (CPU seconds over the time measured)."""
import re
import statistics


def rps(path):
    text = open(path).read()
    # wrk's "Requests/sec: N", or h2load's "finished in Ts, N req/s".
    m = re.search(r"Requests/sec:\s+([\d.]+)", text) or re.search(r"finished in [\d.]+s, ([\d.]+) req/s", text)
    return float(m.group(1)) if m else 0.0


def measured(path, duration):
    """(requests, seconds) of one load: wrk's "N requests in Ts" when it says so, else req/s over
    the nominal duration."""
    m = re.search(r"(\d+) requests in ([\d.]+)(ms|s)", open(path).read())
    if m:
        return int(m.group(1)), float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)
    dur = float(str(duration).rstrip("s"))
    return rps(path) * dur, dur


def rounds_of(tmp, name, rounds, hz, duration):
    """Each round's (req/s, req per CPU-second, busy cores) of one node."""
    out = []
    for i in range(1, rounds + 1):
        n, secs = measured(f"{tmp}/wrk-{name}-{i}.txt", duration)
        cpu = int(open(f"{tmp}/cpu-{name}-{i}.txt").read()) / hz
        out.append((rps(f"{tmp}/wrk-{name}-{i}.txt"), n / cpu if cpu else 0, cpu / secs if secs else 0))
    return out


def per_cpu(tmp, name, rounds, hz, duration):
    """Each round's req per CPU-second of one node."""
    return [r[1] for r in rounds_of(tmp, name, rounds, hz, duration)]


def medians(tmp, names, rounds, hz, duration):
    res = {}
    for n in names:
        r = rounds_of(tmp, n, rounds, hz, duration)
        res[n] = tuple(statistics.median(x[k] for x in r) for k in range(3))
    return res
